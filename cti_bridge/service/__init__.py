"""The running service: wires ami -> calls -> outbox -> zammad and agi, in start/stop order.

``daemon`` owns the parts and their lifecycle; ``status`` answers ``cti-bridge status`` on a unix
socket; ``metrics`` holds the Prometheus registry that ``cti_bridge.web`` serves; ``sdnotify``
talks to systemd; ``checks`` is ``cti-bridge check``.
"""

"""The running service: wires ami -> calls -> outbox -> zammad and agi, in start/stop order.

``daemon`` owns the parts and their lifecycle; ``staging`` batches the CTI events into outbox
commits (held while the outbox cannot be written); ``status`` answers ``cti-bridge status`` on a
unix socket; ``metrics`` holds the Prometheus registry that ``cti_bridge.web`` serves;
``sdnotify`` talks to systemd and ``readiness`` decides what it hears (READY, STATUS);
``checks`` is ``cti-bridge check``.
"""

"""The call model: AMI event dicts in, Zammad CTI events (``newCall``/``answer``/``hangup``) out.

Pure and synchronous: no sockets, no clock of its own (the caller passes time in), so recorded
traces replay exactly (``cti-bridge replay``, ``calls.trace``). See docs/asterisk-ami.md for the
AMI facts it relies on and docs/causes.md for the hangup cause table. Start reading at
``tracker.CallTracker``, the facade; its module docstring lists the parts.

``HANDLED_EVENTS`` is every AMI event the model reads (``cti_bridge.ami.wanted`` builds the AMI
filter from it).
"""

from cti_bridge.calls.tracker import HANDLED_EVENTS

__all__ = ["HANDLED_EVENTS"]

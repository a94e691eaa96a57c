"""The call model: AMI event dicts in, Zammad CTI events (``newCall``/``answer``/``hangup``) out.

Pure and synchronous: no sockets, no clock of its own (the caller passes time in), so recorded
traces replay exactly (``cti-bridge replay``, ``calls.trace``). See docs/asterisk-ami.md for the
AMI facts it relies on and docs/causes.md for the hangup cause table. Start reading at
``tracker.CallTracker``, the facade; its parts:

- ``model``: ``Channel``, ``Call`` and the enums of where a call stands;
- ``graph``: the channel graph (Local pairs, dial parents, bridges);
- ``rules``: the PBX's rules, with the one trunk predicate the AGI hook uses too;
- ``direction``: call set-up, who calls whom;
- ``newcall``: holding an inbound ``newCall`` until the phones ring;
- ``answer``: answer detection;
- ``hangup``: the cause table, one ``hangup`` per posted call;
- ``resync``: ghost calls and catching up after a reconnect or restart;
- ``trace``: reading recorded AMI traces.

``HANDLED_EVENTS`` is every AMI event the model reads (``cti_bridge.ami.wanted`` builds the AMI
filter from it).
"""

from cti_bridge.calls.tracker import HANDLED_EVENTS

__all__ = ["HANDLED_EVENTS"]

"""The call model: AMI event dicts in, Zammad CTI events (``newCall``/``answer``/``hangup``) out.

Pure and synchronous: no sockets, no clock of its own (the caller passes time in), so recorded
traces replay exactly (``cti-bridge replay``, ``calls.trace``). See docs/asterisk-ami.md for the
AMI facts it relies on and docs/causes.md for the hangup cause table.
"""

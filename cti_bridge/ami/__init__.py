"""The AMI side: bytes from Asterisk in, plain ``{header: value}`` event dicts out.

``protocol`` splits and parses the wire frames (lean, bounded, UTF-8 safe); ``client`` owns the
panoramisk Manager (``manager``): login, reconnect and the few actions the bridge sends (Hangup),
with the ping ``watchdog``, the channel listing used to resync (``resync``), the guarded event
callback (``sink``) and what ``cti-bridge check`` asks (``checks``) beside it. ``wanted`` is
the list of events read, the AMI filter's one source. Nothing here knows about calls.
"""

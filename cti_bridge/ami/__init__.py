"""The AMI side: bytes from Asterisk in, plain ``{header: value}`` event dicts out.

``protocol`` splits and parses the wire frames (lean, bounded, UTF-8 safe); ``client`` owns the
panoramisk Manager: login, reconnect, the ping watchdog, the channel listing used to resync, and
the few actions the bridge sends (Hangup). Nothing here knows about calls.
"""

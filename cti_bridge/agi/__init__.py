"""The way back: a FastAGI request from the dialplan in, an AGI action (reject, caller ID) out.

The hook runs before ``Dial()``, so Zammad's answer to the call's ``newCall`` takes effect before
any phone rings (docs/asterisk-ami.md#11-acting-on-a-call-ami-is-too-late-fastagi-is-in-time).
``wire`` is the AGI dialogue as data, ``server`` the listener (one session per connection,
failing open), ``decide`` turns Zammad's answer into the action.
"""

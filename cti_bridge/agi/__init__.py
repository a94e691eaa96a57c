"""The way back: a FastAGI request from the dialplan in, an AGI action (reject, caller ID) out.

The hook runs before ``Dial()``, so Zammad's answer to the call's ``newCall`` takes effect before
any phone rings (docs/asterisk-ami.md, "acting on a call").
"""

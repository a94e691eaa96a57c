"""``cti-bridge demo``: the lab (two private Asterisks), the Zammad stand-in and a round of calls.

The e2e tests use the same lab and fake Zammad (tests/e2e, tests/support import them from here).
"""

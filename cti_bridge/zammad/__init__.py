"""The Zammad side: outbox rows in, form POSTs to the CTI endpoint out, Zammad's answers back.

``client`` posts one event over httpx and turns every outcome into an answer or a typed error;
``delivery`` drains the outbox: one call's events in order, calls in parallel, nothing repeated
that Zammad may already have stored (docs/zammad-cti.md).
"""

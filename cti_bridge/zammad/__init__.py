"""The Zammad side: outbox rows in, form POSTs to the CTI endpoint out, Zammad's answers back.

The public API is exported here; the modules behind it are the parts:

- ``client`` posts one event over httpx; ``answers`` reads Zammad's answer into a
  :class:`ZammadAnswer`, ``errors`` every failure into a typed :class:`ZammadError`.
- ``delivery`` drains the outbox: one call's events in order, calls in parallel, nothing
  repeated that Zammad may already have stored
  (docs/zammad-cti.md#6-not-idempotent-duplicates-order-retries). Its parts: ``policy`` (the
  retry policy, pure), ``lanes``, ``sender``, ``health``, ``acks``, ``waiters``.
"""

from cti_bridge.zammad.answers import NO_ACTION, ZammadAnswer
from cti_bridge.zammad.client import (
    MAX_BODY,
    ZammadClient,
    check_endpoint,
    form_body,
    send_once,
)
from cti_bridge.zammad.delivery import Delivery, Observer
from cti_bridge.zammad.errors import ZammadError, ZammadRejected, ZammadUnavailable
from cti_bridge.zammad.health import State
from cti_bridge.zammad.policy import Verdict

__all__ = [
    "MAX_BODY",
    "NO_ACTION",
    "Delivery",
    "Observer",
    "State",
    "Verdict",
    "ZammadAnswer",
    "ZammadClient",
    "ZammadError",
    "ZammadRejected",
    "ZammadUnavailable",
    "check_endpoint",
    "form_body",
    "send_once",
]

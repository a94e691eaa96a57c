"""What to do with a call's head event, before and after posting it: the retry policy.

Pure functions of the event's facts and Zammad's answer, so the whole policy is one table
(tests/zammad/test_policy.py); the delivery loop only carries the verdicts out.

Why the policy is what it is: Zammad's call log is not idempotent
(docs/zammad-cti.md#6-not-idempotent-duplicates-order-retries). A repeated ``newCall`` is
harmless (500 "already exists"), but a repeated ``hangup`` can turn a missed call into a handled
one and a repeated ``answer`` restarts the talk time. So ``answer``/``hangup`` are repeated only
when the request may not have been processed: no HTTP answer (refused, reset, a timeout: a proxy
drops a request whose client has gone), 429/502/503/504, or a 5xx that is not Zammad's JSON
error (with ``Accept: application/json`` Rails answers JSON, so an HTML 500 comes from something
in front of it). ``maybe_processed`` is not consulted: a timeout after the request was written
is repeated all the same, since keeping the event beats losing it.

The status codes and error texts: docs/zammad-cti.md#5-status-codes-and-error-bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from cti_bridge.zammad.errors import ZammadError, ZammadRejected

#: Statuses after which an ``answer``/``hangup`` is repeated even with an error body: a rate
#: limit or a proxy's gateway error, so Zammad's application did not run the request.
SAFE_TO_REPEAT = frozenset({429, 502, 503, 504})


class Verdict(StrEnum):
    """What becomes of a call's head event; the delivery's sender carries it out."""

    SEND = "send"
    """Before a post: nothing stops it."""
    DELIVERED = "delivered"
    """Zammad has it (also a retried ``newCall`` answered 500 "already exists")."""
    RETRY_CALL = "retry_call"
    """Zammad ran or refused this event alone, storing nothing: retry this call only, later
    (500 "Error ID" on ``answer``/``hangup``; 422 about the event, e.g. "Invalid 'direction'")."""
    ZAMMAD_DOWN = "zammad_down"
    """Zammad is unreachable or sick: keep the event and probe with exponential backoff."""
    REFUSED = "refused"
    """Zammad refuses the bridge's configuration (401/403/404/3xx, 422 "Feature is disabled" or
    "not configured"): keep every event and probe every ``config_retry_interval``."""
    DEAD = "dead"
    """To the dead-letter table: too old, not safe to repeat, or its call's ``newCall`` is."""


class Event(NamedTuple):
    """The facts about a call's head event the policy looks at.

    A named tuple, not a frozen dataclass: one is built per post, and a frozen dataclass costs
    several times as much to build.
    """

    name: str
    """``newCall``, ``answer`` or ``hangup``."""
    age: float = 0.0
    """Seconds since it was committed to the outbox."""
    error_ids: int = 0
    """500 "Error ID" answers to it in this run, the one being judged included."""
    call_dead: bool = False
    """Its call's ``newCall`` went to the dead-letter table (Zammad would answer 500)."""


@dataclass(frozen=True)
class Limits:
    max_age: float
    """Older events are dead-lettered instead of posted (``[zammad] max_age``)."""
    error_id_retries: int
    """Posts of an ``answer``/``hangup`` answered 500 "Error ID" before it is dead-lettered."""


def before_post(event: Event, limits: Limits) -> Verdict:
    """SEND, or DEAD for an event that must not be posted at all.

    Age is judged only here: an event posted in time and accepted is delivered however long the
    post took, and one that ages during an outage is dead-lettered before its next post.
    """
    if expired(event, limits):
        return Verdict.DEAD
    if event.name != "newCall" and event.call_dead:
        return Verdict.DEAD
    return Verdict.SEND


def expired(event: Event, limits: Limits) -> bool:
    """Older than ``max_age``: dead-lettered instead of posted, also while Zammad is down."""
    return event.age > limits.max_age


def unknown_call(name: str, error: ZammadError) -> bool:
    """A 500 "Error ID" to ``answer``/``hangup``: Zammad knows no such call (yet)."""
    return (
        name != "newCall"
        and not isinstance(error, ZammadRejected)
        and error.status_code == 500
        and error.error_id
    )


def after_post(error: ZammadError | None, event: Event, limits: Limits) -> Verdict:
    """The verdict on a post of ``event`` that raised ``error`` (None: Zammad accepted it)."""
    if error is None or (event.name == "newCall" and error.already_exists):
        return Verdict.DELIVERED
    if isinstance(error, ZammadRejected):
        if error.status_code == 422 and not error.feature_off:
            return Verdict.RETRY_CALL  # about this event only; nothing was stored
        return Verdict.REFUSED
    if event.name != "newCall" and error.error is not None and error.status_code is not None:
        # Zammad's application answered: it ran the request.
        if unknown_call(event.name, error):
            if event.error_ids >= limits.error_id_retries:
                return Verdict.DEAD
            return Verdict.RETRY_CALL
        if error.status_code not in SAFE_TO_REPEAT:
            return Verdict.DEAD
    return Verdict.ZAMMAD_DOWN


def dead_reason(error: ZammadError | None, event: Event, limits: Limits) -> str:
    """The reason recorded with a DEAD verdict (the outbox's dead-letter table, the ERROR log)."""
    if error is None:
        if expired(event, limits):
            return f"older than max_age ({limits.max_age:.0f} s)"
        return "this call's newCall was dead-lettered"
    if unknown_call(event.name, error):
        return f"Zammad knows no such call ({event.error_ids} tries: {error.reason})"
    return f"not repeated: Zammad may have processed it ({error.reason})"

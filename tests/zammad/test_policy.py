"""The retry policy, row by row: Zammad's answer and the event's facts in, a verdict out.

Why each row is what it is: docs/zammad-cti.md#5-status-codes-and-error-bodies and
#6-not-idempotent-duplicates-order-retries.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti_bridge.zammad import Verdict, ZammadError, ZammadRejected, ZammadUnavailable
from cti_bridge.zammad.policy import Event, Limits, after_post, before_post, dead_reason

LIMITS = Limits(max_age=3600.0, error_id_retries=5)

DELIVERED = Verdict.DELIVERED
RETRY = Verdict.RETRY_CALL
DOWN = Verdict.ZAMMAD_DOWN
REFUSED = Verdict.REFUSED
DEAD = Verdict.DEAD

EXISTS = "This object already exists."
EXISTS_OLD = "Object already exists!"
ERROR_ID = "Error ID a1b2c3: Please contact your administrator."
DISABLED = "Feature is disabled, please contact your administrator!"
NOT_CONFIGURED = "Feature not configured, please contact your admin!"
BAD_TOKEN = "Invalid token, please contact your admin!"
BAD_DIRECTION = "Invalid 'direction'!"

U, R = ZammadUnavailable, ZammadRejected
#: kind, status, Zammad's error text, maybe_processed, event, 500 "Error ID" answers so far
#: (this one included) -> verdict
TABLE: list[tuple[type[ZammadError], int | None, str | None, bool, str, int, Verdict]] = [
    # A retried newCall that an earlier try stored: delivered (current and older wording).
    (U, 500, EXISTS, True, "newCall", 0, DELIVERED),
    (U, 500, EXISTS_OLD, True, "newCall", 0, DELIVERED),
    # answer/hangup never count as duplicates: Zammad ran the request, do not repeat it.
    (U, 500, EXISTS, True, "hangup", 0, DEAD),
    # No HTTP answer: refused/reset (never reached Zammad) or a timeout (may have): retried.
    (U, None, None, False, "newCall", 0, DOWN),
    (U, None, None, False, "answer", 0, DOWN),
    (U, None, None, True, "hangup", 0, DOWN),
    # 429 and a proxy's 502/503/504: Zammad's application did not run it, safe to repeat.
    (U, 429, None, True, "hangup", 0, DOWN),
    (U, 502, None, True, "hangup", 0, DOWN),
    (U, 503, "Service Unavailable", True, "answer", 0, DOWN),
    (U, 504, None, True, "answer", 0, DOWN),
    # 5xx without Zammad's JSON error (an HTML page): something in front of Rails, repeat.
    (U, 500, None, True, "hangup", 0, DOWN),
    # 5xx with Zammad's JSON error: it ran the request, so answer/hangup are not repeated...
    (U, 500, "undefined method", True, "hangup", 0, DEAD),
    (U, 501, "Not implemented", True, "answer", 0, DEAD),
    # ...but newCall is: a repeat is harmless (500 "already exists" if stored).
    (U, 500, "undefined method", True, "newCall", 0, DOWN),
    (U, 500, ERROR_ID, True, "newCall", 0, DOWN),
    # 500 "Error ID" to answer/hangup: no such call (yet); retried for this call only, bounded.
    (U, 500, ERROR_ID, True, "answer", 1, RETRY),
    (U, 500, ERROR_ID, True, "hangup", 4, RETRY),
    (U, 500, ERROR_ID, True, "hangup", 5, DEAD),
    (U, 500, ERROR_ID, True, "hangup", 6, DEAD),
    # 422 "Error ID": about the event itself (an argument error), not a 500: slow retry.
    (R, 422, ERROR_ID, True, "hangup", 0, RETRY),
    (R, 422, BAD_DIRECTION, True, "newCall", 0, RETRY),
    # Configuration: the whole bridge is refused, every event kept.
    (R, 422, DISABLED, True, "newCall", 0, REFUSED),
    (R, 422, NOT_CONFIGURED, True, "hangup", 0, REFUSED),
    (R, 401, BAD_TOKEN, True, "answer", 0, REFUSED),
    (R, 403, None, True, "newCall", 0, REFUSED),
    (R, 404, None, True, "hangup", 0, REFUSED),
    (R, 301, None, True, "newCall", 0, REFUSED),
    (R, 302, None, True, "hangup", 0, REFUSED),
    (R, None, None, False, "newCall", 0, REFUSED),  # unusable URL or proxy setting
    # 408/425 are transient like 429, but not on the safe list: a JSON error means Zammad ran it.
    (U, 408, None, True, "hangup", 0, DOWN),
    (U, 408, "Request Timeout", True, "hangup", 0, DEAD),
    # A plain ZammadError (neither kind) follows the "unavailable" rows.
    (ZammadError, 503, None, True, "hangup", 0, DOWN),
    (ZammadError, 500, ERROR_ID, True, "answer", 2, RETRY),
]


@pytest.mark.parametrize(("kind", "status", "text", "maybe", "name", "error_ids", "want"), TABLE)
def test_verdict_after_a_failed_post(
    kind: type[ZammadError],
    status: int | None,
    text: str | None,
    maybe: bool,
    name: str,
    error_ids: int,
    want: Verdict,
) -> None:
    err = kind("x", status_code=status, error=text, maybe_processed=maybe)
    assert after_post(err, Event(name, error_ids=error_ids), LIMITS) is want


@pytest.mark.parametrize("name", ["newCall", "answer", "hangup"])
def test_an_accepted_post_is_delivered_whatever_its_age(name: str) -> None:
    old = Event(name, age=LIMITS.max_age * 10, call_dead=True)
    assert after_post(None, old, LIMITS) is DELIVERED


@pytest.mark.parametrize(
    ("name", "age", "call_dead", "want"),
    [
        ("newCall", 0.0, False, Verdict.SEND),
        ("hangup", 3600.0, False, Verdict.SEND),  # exactly max_age: still sent
        ("answer", 3600.5, False, DEAD),
        ("newCall", 3600.5, False, DEAD),
        ("hangup", 1.0, True, DEAD),  # its newCall is dead: Zammad would answer 500
        ("answer", 1.0, True, DEAD),
        ("newCall", 1.0, True, Verdict.SEND),  # a newCall again (outbox retry) revives the call
    ],
)
def test_verdict_before_a_post(name: str, age: float, call_dead: bool, want: Verdict) -> None:
    assert before_post(Event(name, age=age, call_dead=call_dead), LIMITS) is want


@pytest.mark.parametrize(
    ("err", "event", "reason"),
    [
        (None, Event("hangup", age=4000.0), "older than max_age (3600 s)"),
        (None, Event("hangup", call_dead=True), "this call's newCall was dead-lettered"),
        (
            ZammadUnavailable("HTTP 500: Error ID x", status_code=500, error="Error ID x"),
            Event("answer", error_ids=5),
            "Zammad knows no such call (5 tries: HTTP 500: Error ID x)",
        ),
        (
            ZammadUnavailable("HTTP 500: boom", status_code=500, error="boom"),
            Event("hangup"),
            "not repeated: Zammad may have processed it (HTTP 500: boom)",
        ),
    ],
)
def test_dead_letter_reasons(err: ZammadError | None, event: Event, reason: str) -> None:
    assert dead_reason(err, event, LIMITS) == reason


@given(
    status=st.one_of(st.none(), st.integers(100, 599)),
    text=st.one_of(st.none(), st.text(max_size=40)),
    maybe=st.booleans(),
    name=st.sampled_from(["newCall", "answer", "hangup"]),
    error_ids=st.integers(0, 10),
    rejected=st.booleans(),
)
def test_what_zammad_may_have_stored_is_never_repeated(
    status: int | None, text: str | None, maybe: bool, name: str, error_ids: int, rejected: bool
) -> None:
    """An answer/hangup that Zammad's own JSON error says it ran is never posted again as is."""
    kind = ZammadRejected if rejected else ZammadUnavailable
    err = kind("x", status_code=status, error=text, maybe_processed=maybe)
    verdict = after_post(err, Event(name, error_ids=error_ids), LIMITS)
    ran = not rejected and status is not None and status >= 500 and text is not None
    if name != "newCall" and ran and not err.error_id and status not in {502, 503, 504}:
        assert verdict is DEAD
    if name == "newCall":
        assert verdict is not DEAD  # a newCall dies of old age only

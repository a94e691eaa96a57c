"""The cause tables of docs/causes.md, row by row."""

from __future__ import annotations

import pytest

from cti_bridge.calls.hangup import LegOutcome, hangup_cause, leg_outcome
from cti_bridge.calls.model import Call, Channel
from cti_bridge.causes import Q850, ZammadCause


def leg(status: str, cause: int | None) -> Channel:
    ch = Channel("1.1", "PJSIP/phone-00000001", Call("1.0"))
    ch.dial_status = status
    ch.hangup_cause = cause
    return ch


@pytest.mark.parametrize(
    ("status", "cause", "outcome"),
    [
        ("CANCEL", Q850.ANSWERED_ELSEWHERE, None),  # row 1
        ("NOANSWER", Q850.USER_BUSY, LegOutcome.BUSY),  # row 2: the cause wins
        ("BUSY", Q850.NORMAL_CLEARING, LegOutcome.BUSY),  # row 2: the status alone
        ("CHANUNAVAIL", Q850.SUBSCRIBER_ABSENT, LegOutcome.NOT_FOUND),  # row 3
        ("NOANSWER", Q850.UNALLOCATED, LegOutcome.NOT_FOUND),  # row 3
        ("NOANSWER", Q850.NORMAL_CIRCUIT_CONGESTION, LegOutcome.CONGESTION),  # row 4
        ("CONGESTION", Q850.NORMAL_CLEARING, LegOutcome.CONGESTION),  # row 4
        ("NOANSWER", Q850.NORMAL_CLEARING, LegOutcome.RANG_OUT),  # row 5
        ("NOANSWER", None, LegOutcome.RANG_OUT),  # row 5: still up at the end
        ("CHANUNAVAIL", Q850.NO_ANSWER, LegOutcome.CONGESTION),  # row 6
        ("NOANSWER", Q850.CALL_REJECTED, LegOutcome.NO_ANSWER),  # row 7
        ("CANCEL", Q850.NORMAL_CLEARING, LegOutcome.NO_ANSWER),  # row 7: the caller gave up
        ("ANSWER", Q850.NORMAL_UNSPECIFIED, LegOutcome.NO_ANSWER),  # row 7
        ("ANSWER", Q850.REDIRECTED, None),  # row 8
        ("", None, None),  # row 8
    ],
)
def test_leg_outcome(status: str, cause: int | None, outcome: LegOutcome | None) -> None:
    assert leg_outcome(leg(status, cause)) is outcome


@pytest.mark.parametrize(
    ("legs", "cause"),
    [
        ([("BUSY", 17), ("NOANSWER", 16)], ZammadCause.NO_ANSWER),  # a phone rang out
        ([("BUSY", 17), ("NOANSWER", 21)], ZammadCause.BUSY),
        ([("NOANSWER", 21), ("CHANUNAVAIL", 20)], ZammadCause.NO_ANSWER),
        ([("CHANUNAVAIL", 20), ("CONGESTION", 34)], ZammadCause.NOT_FOUND),
        ([("CONGESTION", 34)], ZammadCause.CONGESTION),
    ],
)
def test_best_leg_outcome(legs: list[tuple[str, int]], cause: ZammadCause) -> None:
    call = Call("1.0")
    call.legs = [leg(s, c) for s, c in legs]
    assert hangup_cause(call) is cause


@pytest.mark.parametrize(
    ("q850", "cause"),
    [
        (Q850.USER_BUSY, ZammadCause.BUSY),
        (Q850.UNALLOCATED, ZammadCause.NOT_FOUND),
        (Q850.NORMAL_CIRCUIT_CONGESTION, ZammadCause.CONGESTION),
        (Q850.INTERWORKING, ZammadCause.NO_ANSWER),  # 127 left out of congestion here
        (Q850.NORMAL_CLEARING, ZammadCause.NO_ANSWER),
        (None, ZammadCause.NO_ANSWER),
    ],
)
def test_nothing_dialled_uses_the_callers_cause(q850: int | None, cause: ZammadCause) -> None:
    call = Call("1.0")
    call.root = call.caller = leg("", q850)
    assert hangup_cause(call) is cause


def test_call_level_rules_in_order() -> None:
    call = Call("1.0")
    call.legs = [leg("BUSY", 17)]
    call.caller_cancelled = True
    assert hangup_cause(call) is ZammadCause.CANCEL
    call.forwarded = True
    assert hangup_cause(call) is ZammadCause.FORWARDED
    call.answered = True
    assert hangup_cause(call) is ZammadCause.NORMAL_CLEARING

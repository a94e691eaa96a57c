"""Zammad's answer to a newCall -> the hook's action, for every answer and direction."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti_bridge.agi.decide import NONE, AgiDecision, decision_for, valid_caller_id
from cti_bridge.zammad.client import ZammadAnswer


def new_call(direction: str) -> dict[str, str | list[str]]:
    return {"event": "newCall", "callId": "1.0", "direction": direction, "from": "1", "to": "2"}


def plus(value: str) -> str:
    return "+" + value


@pytest.mark.parametrize(
    ("direction", "answer", "expected"),
    [
        ("in", ZammadAnswer("reject"), AgiDecision("reject")),
        ("out", ZammadAnswer("reject"), NONE),  # Zammad blocks callers, not our own agents
        ("out", ZammadAnswer("dial", caller_id="4930777"), AgiDecision("dial", "+4930777")),
        ("in", ZammadAnswer("dial", caller_id="4930777"), NONE),  # a caller ID is outbound only
        ("out", ZammadAnswer("dial"), NONE),  # dial without a number changes nothing
        ("out", ZammadAnswer("dial", caller_id=""), NONE),
        ("in", ZammadAnswer("none"), NONE),
        ("in", None, NONE),  # timeout or error: fail open
        ("internal", ZammadAnswer("reject"), NONE),
    ],
)
def test_decision_for(direction: str, answer: ZammadAnswer | None, expected: AgiDecision) -> None:
    assert decision_for(new_call(direction), answer, plus) == expected


def test_caller_id_is_formatted_only_for_dial() -> None:
    seen: list[str] = []

    def fmt(value: str) -> str:
        seen.append(value)
        return value

    decision_for(new_call("in"), ZammadAnswer("reject"), fmt)
    assert seen == []
    decision_for(new_call("out"), ZammadAnswer("dial", caller_id="4930"), fmt)
    assert seen == ["4930"]


@pytest.mark.parametrize("value", ["+4930777000", "4930", "0"])
def test_valid_caller_id_accepts_digits(value: str) -> None:
    assert valid_caller_id(value) == value


@pytest.mark.parametrize("value", ["", "+", "49 30", "4930;x", "+" + "1" * 21, None, 4930])
def test_valid_caller_id_refuses_anything_else(value: object) -> None:
    assert valid_caller_id(value) is None


@given(st.text(max_size=25))
def test_valid_caller_id_is_plus_and_digits(value: str) -> None:
    result = valid_caller_id(value)
    assert result is None or (
        result == value and result.lstrip("+").isdecimal() and value.isascii()
    )

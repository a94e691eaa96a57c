"""Per-agent dial limits with a hand-driven clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cti_bridge.dial.limits import WINDOW, DialLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_dial_per_agent_every_three_seconds() -> None:
    clock = Clock()
    limits = DialLimits(10, clock)
    assert limits.acquire("101") == 0
    clock.now += 1
    assert limits.acquire("101") == 2.0
    assert limits.acquire("102") == 0  # another agent is not held up
    clock.now += 2
    assert limits.acquire("101") == 0


def test_max_per_minute_per_agent() -> None:
    clock = Clock()
    limits = DialLimits(3, clock)
    for _ in range(3):
        assert limits.acquire("101") == 0
        clock.now += 3
    wait = limits.acquire("101")
    assert wait == WINDOW - 9
    clock.now += wait
    assert limits.acquire("101") == 0


@given(st.lists(st.floats(0, 10, allow_nan=False), max_size=80), st.integers(1, 20))
def test_never_more_than_allowed_in_any_minute(gaps: list[float], per_minute: int) -> None:
    clock = Clock()
    limits = DialLimits(per_minute, clock)
    granted: list[float] = []
    for gap in gaps:
        clock.now += gap
        if limits.acquire("101") == 0:
            granted.append(clock.now)
    for i, t in enumerate(granted):
        assert sum(1 for u in granted[i:] if u < t + WINDOW) <= per_minute
        if i:
            assert t - granted[i - 1] >= 3.0

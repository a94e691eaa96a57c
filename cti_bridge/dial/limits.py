"""Per-agent dial limits: at most one dial every few seconds, and ``max_per_minute``.

A dial link is a bearer key: if it leaks, these bound what it can cost (the agent's phone
rings each time, and the number still has to pass ``[dial] deny``).
"""

from __future__ import annotations

import collections
from collections.abc import Callable

MIN_INTERVAL = 3.0
WINDOW = 60.0


class DialLimits:
    """Sliding one-minute window per extension; only dials that were let through count."""

    def __init__(
        self, per_minute: int, clock: Callable[[], float], min_interval: float = MIN_INTERVAL
    ) -> None:
        self.per_minute = per_minute
        self.min_interval = min_interval
        self._clock = clock
        self._recent: dict[str, collections.deque[float]] = {}

    def acquire(self, ext: str) -> float:
        """0.0 and the dial is counted; else the seconds to wait before the next one."""
        now = self._clock()
        recent = self._recent.setdefault(ext, collections.deque())
        while recent and recent[0] <= now - WINDOW:
            recent.popleft()
        waits = [0.0]
        if recent:
            waits.append(recent[-1] + self.min_interval - now)
        if len(recent) >= self.per_minute:
            waits.append(recent[0] + WINDOW - now)
        wait = max(waits)
        if wait > 0:
            return wait
        recent.append(now)
        return 0.0

"""Dials in progress, by an opaque id the page polls (the link key is never part of it)."""

from __future__ import annotations

import collections
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

KEEP_FOR = 600.0  # seconds an outcome stays readable
MAX_KEPT = 1000


class DialState(StrEnum):
    RINGING = "ringing"  # the agent's phone rings
    ANSWERED = "answered"  # the agent picked up: the PBX calls the customer
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self is not DialState.RINGING


@dataclass
class Attempt:
    ext: str
    display: str
    created: float
    state: DialState = DialState.RINGING
    message: str = ""
    id: str = field(default_factory=lambda: secrets.token_urlsafe(16))


class Attempts:
    """At most :data:`MAX_KEPT` attempts, each for :data:`KEEP_FOR` seconds."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._by_id: collections.OrderedDict[str, Attempt] = collections.OrderedDict()

    def add(self, ext: str, display: str, message: str) -> Attempt:
        now = self._clock()
        while self._by_id:
            oldest = next(iter(self._by_id.values()))
            if oldest.created > now - KEEP_FOR and len(self._by_id) < MAX_KEPT:
                break
            self._by_id.popitem(last=False)
        attempt = Attempt(ext, display, now, message=message)
        self._by_id[attempt.id] = attempt
        return attempt

    def get(self, attempt_id: str) -> Attempt | None:
        attempt = self._by_id.get(attempt_id)
        if attempt is None or attempt.created <= self._clock() - KEEP_FOR:
            return None
        return attempt

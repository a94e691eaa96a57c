"""CTI events between the tracker and the outbox: committed in batches, held when the outbox fails.

The AMI callback stages what the tracker produced and one commit per AMI read writes it to the
outbox (``loop.call_soon``: the same loop pass), since one transaction per event would make the
outbox the daemon's bottleneck under load. A crash in that window loses no more than the AMI
bytes still unread in the socket would. When the outbox cannot be written (locked by
``cti-bridge outbox`` beyond the busy timeout, disk full) the events stay here and are retried:
AMI will not send them again.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable

from cti_bridge.events import CtiEvent

log = logging.getLogger("cti_bridge")

STAGE_RETRY = 1.0  # seconds between tries to write held events when the outbox failed
MAX_STAGED = 200_000  # CTI events held in memory while the outbox cannot be written


class StagedEvents:
    """The events not yet in the outbox, in the order the tracker produced them."""

    def __init__(
        self,
        submit: Callable[[list[CtiEvent]], None],
        *,
        retry: float = STAGE_RETRY,
        limit: int = MAX_STAGED,
    ) -> None:
        self._submit = submit
        self._retry_after = retry
        self._limit = limit
        self._events: list[CtiEvent] = []
        self._retry: asyncio.TimerHandle | None = None
        self._failing = False

    @property
    def failing(self) -> bool:
        """True while the last write to the outbox failed (events are held in memory)."""
        return self._failing

    def __len__(self) -> int:
        return len(self._events)

    def stage(self, events: list[CtiEvent]) -> None:
        """Hold ``events`` for the commit at the end of this loop pass (one per AMI read)."""
        if not self._events and self._retry is None:
            asyncio.get_running_loop().call_soon(self.commit)
        self._events += events

    def dispatch(self, events: list[CtiEvent]) -> None:
        """Commit now, behind anything staged: each call's events keep their order."""
        self._events += events
        self.commit()

    def commit(self) -> None:
        """Commit the staged events; if the outbox cannot be written, keep them and retry."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if not self._events:
            return
        staged, self._events = self._events, []
        try:
            self._submit(staged)
        except (sqlite3.Error, OSError) as exc:
            self._hold(staged, exc)
            return
        if self._failing:
            self._failing = False
            log.warning("outbox writable again: %d held CTI event(s) written", len(staged))

    def _hold(self, staged: list[CtiEvent], exc: BaseException) -> None:
        self._events[:0] = staged
        dropped = len(self._events) - self._limit
        if dropped > 0:
            del self._events[:dropped]
            log.error("outbox unwritable: %d oldest CTI event(s) dropped from memory", dropped)
        if not self._failing:
            log.error(
                "cannot write %d CTI event(s) to the outbox (%s); keeping them in memory, "
                "retrying every %.0f s",
                len(self._events),
                exc,
                self._retry_after,
            )
        self._failing = True
        loop = asyncio.get_running_loop()
        self._retry = loop.call_later(self._retry_after, self.commit)

    def close(self, last: list[CtiEvent]) -> None:
        """Last commit at shutdown, ``last`` behind the rest; what the outbox refuses is lost."""
        self.dispatch(last)
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
            log.error("outbox unwritable at exit: %d CTI event(s) lost", len(self._events))

    def clear(self) -> None:
        self._events.clear()

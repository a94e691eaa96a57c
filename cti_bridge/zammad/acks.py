"""Acks of delivered events, committed in batches that ride in the next outbox commit.

A commit per delivered event cost more than all the rest of its bookkeeping, so the acks of
one event-loop pass are committed together at its end, or ride in the transaction of the next
``put_many`` if one comes first; every read of the outbox flushes them before it. Not later
than that: an ack lost to a crash means the event is posted again after the restart, and a
repeated ``hangup`` can turn a missed call into a handled one in Zammad
(docs/zammad-cti.md#6-not-idempotent-duplicates-order-retries).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence

from cti_bridge.events import CtiEvent
from cti_bridge.outbox.store import Outbox

log = logging.getLogger(__name__)


class AckBatch:
    """The delivered events not yet committed as such."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._ids: list[int] = []
        self._flush_due = False  # a flush is scheduled for this loop pass

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, rid: int) -> None:
        """Event ``rid`` was delivered: commit that at the end of this loop pass at the latest."""
        self._ids.append(rid)
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Commit the acks now (before any read of the outbox, and on stop)."""
        self._flush_due = False
        if self._ids:
            ids, self._ids = self._ids, []
            try:
                self._outbox.ack_many(ids)
            except (sqlite3.Error, OSError) as exc:
                # Kept for the next flush; lost only if the daemon stops first, and then the
                # events are posted again after the restart (at least once).
                self._ids[:0] = ids
                log.error("cannot record %d delivered event(s) in the outbox: %s", len(ids), exc)

    def put_many(self, events: Sequence[CtiEvent]) -> list[int]:
        """Commit ``events`` to the outbox, and the acks due, in one transaction."""
        acks, self._ids = self._ids, []
        try:
            return self._outbox.put_many(events, acks=acks)
        except BaseException:
            self._ids[:0] = acks  # not committed: they stay due
            raise

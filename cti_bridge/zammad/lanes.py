"""Per-call lanes: each call's outbox rows in id order, and the queue of calls ready to send.

Zammad needs a call's events in order, ``answer``/``hangup`` only after its ``newCall`` was
accepted (docs/zammad-cti.md#6-not-idempotent-duplicates-order-retries). So every call has a
lane, and only its head is ever sent; a call is in the ready queue at most once, so two workers
never send for the same call at the same time, while different calls go out concurrently.

Memory holds at most ``max_in_memory`` rows; the rest stays in SQLite and is paged in by id, so
per-call order holds across the page boundary. Rows another process put back (``cti-bridge outbox
retry``) are found the same way.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from cti_bridge.events import CtiEvent, call_id
from cti_bridge.outbox.store import Outbox, Row
from cti_bridge.zammad.acks import AckBatch

_PAGE = 5000
_MAX_DEAD_CALLS = 10_000


@dataclass(slots=True)
class Lane:
    """One call's rows in memory; the head is the next to send."""

    rows: deque[Row] = field(default_factory=deque)
    scheduled: bool = False  # in the ready queue, in flight, or waiting on a per-call timer
    busy: bool = False  # its head is being posted


class Lanes:
    """The lanes, the ready queue, and paging rows in from the outbox."""

    def __init__(self, outbox: Outbox, acks: AckBatch, *, max_in_memory: int) -> None:
        self._outbox = outbox
        self._acks = acks
        self._max_mem = max_in_memory
        self.lanes: dict[str, Lane] = {}
        self._ids: set[int] = set()  # rows in memory
        self._loaded_upto = 0  # highest outbox id looked at
        self._disk_backlog = False  # rows wait on disk for room in memory
        self._ready: deque[str] = deque()
        self._work = asyncio.Event()
        self._timers: set[asyncio.TimerHandle] = set()
        self._error_ids: dict[int, int] = {}  # 500 "Error ID" answers per row, this run
        self._dead_calls: OrderedDict[str, None] = OrderedDict()  # their newCall is dead

    def __contains__(self, rid: int) -> bool:
        return rid in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    # -- rows in ------------------------------------------------------------------------------

    def committed(self, ids: Sequence[int], events: Sequence[CtiEvent], now: float) -> None:
        """``events`` were just committed with ``ids``: take them in, keeping id order."""
        if (
            not self._disk_backlog
            and ids[0] == self._loaded_upto + 1
            and len(self._ids) + len(ids) <= self._max_mem
        ):
            # Nothing else was written since our last look: take them straight in.
            for rid, event in zip(ids, events, strict=True):
                self._enqueue(Row(rid, call_id(event), event, now))
            self._loaded_upto = ids[-1]
        else:
            self.load()  # another process wrote rows, or memory is full: keep id order

    def load(self) -> None:
        """Page rows in from disk in id order while there is room."""
        while (room := self._max_mem - len(self._ids)) > 0:
            self._acks.flush()
            rows = self._outbox.pending(min(room, _PAGE), after=self._loaded_upto)
            if not rows:
                break
            for row in rows:
                if row.id not in self._ids:
                    self._enqueue(row)
            self._loaded_upto = rows[-1].id
        self._disk_backlog = self._outbox.max_id() > self._loaded_upto

    def hurry(self, cid: str) -> None:
        """Put ``cid`` at the head of the ready queue, with all its rows in memory."""
        self._acks.flush()
        for row in self._outbox.pending_for_call(cid):
            if row.id not in self._ids:
                self._enqueue(row)
        ready = self._ready
        if ready and ready[-1] == cid:
            ready.pop()
        elif cid in ready:
            ready.remove(cid)
        else:
            return  # in flight or waiting on a timer: it is already being handled
        ready.appendleft(cid)

    def _enqueue(self, row: Row) -> None:
        lane = self.lanes.get(row.call_id)
        if lane is None:
            lane = self.lanes[row.call_id] = Lane()
        lane.rows.append(row)
        self._ids.add(row.id)
        if not lane.scheduled:
            lane.scheduled = True
            self._ready.append(row.call_id)
            self._work.set()

    # -- the ready queue ----------------------------------------------------------------------

    async def next_ready(self) -> tuple[str, Lane] | None:
        """The next call with an event to send; None after waiting for work (look again)."""
        if self._disk_backlog and len(self._ids) < self._max_mem // 2:
            self.load()
        if not self._ready:
            self._work.clear()
            await self._work.wait()
            return None
        cid = self._ready.popleft()
        lane = self.lanes.get(cid)
        if lane is None:
            return None
        if not lane.rows:
            self.reschedule(cid, lane)
            return None
        return cid, lane

    def reschedule(self, cid: str, lane: Lane) -> None:
        """Its head is done: queue the call again, or drop an emptied lane."""
        if lane.rows:
            self._ready.append(cid)
            self._work.set()
        else:
            lane.scheduled = False
            del self.lanes[cid]

    def first(self, cid: str) -> None:
        """Send ``cid`` next (its head failed while Zammad is unhealthy: the prober takes it)."""
        self._ready.appendleft(cid)

    def later(self, cid: str, delay: float) -> None:
        """Queue ``cid`` again after ``delay`` s; meanwhile it blocks no other call."""
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            lane = self.lanes.get(cid)
            if lane is not None:
                self.reschedule(cid, lane)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def later_unless_queued(self, cid: str, lane: Lane, delay: float) -> None:
        """``later``, after a bug in sending: unless the call is already queued or gone."""
        if self.lanes.get(cid) is lane and cid not in self._ready:
            self.later(cid, delay)

    def idle(self) -> Iterator[tuple[str, Lane]]:
        """Lanes with rows whose head is not being posted (a snapshot: safe to change them)."""
        for cid, lane in list(self.lanes.items()):
            if lane.rows and not lane.busy:
                yield cid, lane

    # -- per-row and per-call facts -----------------------------------------------------------

    def forget(self, row: Row) -> None:
        """``row`` left the outbox (delivered or dead-lettered)."""
        self._ids.discard(row.id)
        self._error_ids.pop(row.id, None)

    def count_error_id(self, rid: int) -> int:
        """One more 500 "Error ID" answer to row ``rid``; returns how many so far."""
        n = self._error_ids[rid] = self._error_ids.get(rid, 0) + 1
        return n

    def is_dead(self, cid: str) -> bool:
        return cid in self._dead_calls

    def mark_dead(self, cid: str) -> None:
        """``cid``'s newCall was dead-lettered: its later events follow it there."""
        self._dead_calls[cid] = None
        if len(self._dead_calls) > _MAX_DEAD_CALLS:
            self._dead_calls.popitem(last=False)

    def revive(self, cid: str) -> None:
        """A newCall of ``cid`` is being sent again (``outbox retry``)."""
        self._dead_calls.pop(cid, None)

    # -- stop ---------------------------------------------------------------------------------

    def halt(self) -> None:
        """Cancel per-call timers and wake the workers waiting for work (they see the stop)."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._work.set()

    def clear(self) -> None:
        """Forget the rows in memory; the outbox keeps them for the next start."""
        self.lanes.clear()
        self._ids.clear()
        self._ready.clear()
        self._loaded_upto = 0

"""Zammad's answers handed to whoever waits for them: the FastAGI hook and AMI-only rejects.

Zammad's decision about a call (reject, dial with a caller ID) comes back only as the answer to
its ``newCall`` (docs/zammad-cti.md#7-answers-reject-and-dial), and only a hook that holds the
ringing call can still act on it. Both kinds of waiter are best effort: an answer that comes
too late, or while nobody looks, is dropped, never queued.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from cti_bridge.zammad.answers import ZammadAnswer

log = logging.getLogger(__name__)

Watch = Callable[[ZammadAnswer], None]


class AnswerWaiters:
    """Waiters (a coroutine awaits one event's answer) and watches (a callback, no task)."""

    def __init__(self, on_done: Callable[[int, ZammadAnswer | None], None] | None = None) -> None:
        self._on_done = on_done  # hears of every event done (the caller log)
        self._waiters: dict[int, asyncio.Future[ZammadAnswer | None]] = {}
        self._watches: dict[int, tuple[float, Watch]] = {}

    @property
    def watching(self) -> int:
        """How many watches are set (expired ones are pruned only as new ones arrive)."""
        return len(self._watches)

    async def wait(self, rid: int, timeout: float) -> ZammadAnswer | None:
        """The answer to event ``rid`` if it is delivered within ``timeout`` s, else None."""
        fut: asyncio.Future[ZammadAnswer | None] = asyncio.get_running_loop().create_future()
        self._waiters[rid] = fut
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            return None
        finally:
            self._waiters.pop(rid, None)

    def watch(self, rid: int, callback: Watch, timeout: float, *, pending: bool) -> None:
        """Call ``callback(answer)`` if event ``rid`` (still ``pending``) is answered in time.

        No task and no timer per event (an inbound call's AMI-only reject watch is set on every
        newCall): a watch is checked when its event is delivered, and expired ones are dropped
        as new ones arrive (in order, as they all share one timeout).
        """
        now = time.monotonic()
        watches = self._watches
        while watches:
            first = next(iter(watches))
            if watches[first][0] > now:
                break
            del watches[first]
        if pending:
            watches[rid] = (now + timeout, callback)

    def resolve(self, rid: int, answer: ZammadAnswer | None) -> None:
        """Event ``rid`` is done: delivered with ``answer``, or dead-lettered (None)."""
        if self._on_done is not None:
            try:
                self._on_done(rid, answer)
            except Exception:  # the caller log's bug must not stop delivery
                log.exception("caller log update for event %d failed", rid)
        fut = self._waiters.get(rid)
        if fut is not None and not fut.done():
            fut.set_result(answer)
        if self._watches:
            watch = self._watches.pop(rid, None)
            if watch is not None and answer is not None and time.monotonic() <= watch[0]:
                try:
                    watch[1](answer)
                except Exception:  # the watcher's bug must not stop delivery
                    log.exception("answer watch for event %d failed", rid)

    def close(self) -> None:
        """Delivery stops: every waiter gets None, every watch is dropped."""
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_result(None)
        self._watches.clear()

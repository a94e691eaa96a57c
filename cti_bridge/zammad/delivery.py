"""Deliver outbox events to Zammad: nothing lost, each call in order, nothing repeated blindly.

Zammad's call log is not idempotent and needs each call's events in order
(docs/zammad-cti.md#6-not-idempotent-duplicates-order-retries), and every event is committed to
the outbox before it is posted, so none is lost to a restart or an outage. :class:`Delivery` is
the facade the daemon uses; the work is done by small parts:

- ``lanes``: one lane per call, only its head is sent; calls go out concurrently through
  ``cfg.concurrency`` workers; rows are paged in from the outbox by id.
- ``policy``: the retry policy, pure: what a post's outcome means (delivered, retry this call
  later, Zammad down, Zammad refusing the bridge, dead-letter).
- ``sender``: posts a head event and carries the verdict out.
- ``health``: while Zammad is down or refuses the bridge, one prober is the only sender.
- ``acks``: delivered events are committed in batches, riding in the next outbox commit.
- ``waiters``: Zammad's answers for the FastAGI hook and the AMI-only rejects.

An optional ``journal`` (the caller log of :mod:`cti_bridge.service.recent`) hears of every
commit and of every event leaving the queue (delivered with Zammad's answer, or dead).

On ``start()`` the whole outbox (events of a previous run, kill -9 included) is queued again. A
housekeeping task picks up rows another process put back (``cti-bridge outbox retry``) and
dead-letters over-age events while Zammad is unreachable. The WAL checkpoint task sleeps until
something was written: an idle daemon does not wake for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from cti_bridge.config import ZammadConfig
from cti_bridge.events import CtiEvent, call_id
from cti_bridge.outbox.store import Outbox
from cti_bridge.zammad.acks import AckBatch
from cti_bridge.zammad.answers import ZammadAnswer
from cti_bridge.zammad.client import ZammadClient
from cti_bridge.zammad.health import HealthGate, Kick, State
from cti_bridge.zammad.lanes import Lanes
from cti_bridge.zammad.sender import Sender
from cti_bridge.zammad.waiters import AnswerWaiters, Watch

__all__ = ["CHECKPOINT_INTERVAL_S", "RESULTS", "Delivery", "Journal", "Observer", "State"]

log = logging.getLogger(__name__)

Observer = Callable[[str, str, float], None]
"""``observer(event_name, result, latency_s)``; result is one of RESULTS."""
RESULTS = ("ok", "reject", "dial", "duplicate", "unavailable", "rejected", "failed", "dead")

CHECKPOINT_INTERVAL_S = 1.0  # at most one WAL checkpoint a second, and none without writes


class Journal(Protocol):
    """Told of each commit and of each event done (``answer`` None: dead-lettered)."""

    def committed(self, ids: list[int], events: list[CtiEvent]) -> None: ...

    def done(self, rid: int, answer: ZammadAnswer | None) -> None: ...


class Delivery:
    """Drains the outbox into Zammad; see the module doc for the parts."""

    def __init__(
        self,
        outbox: Outbox,
        client: ZammadClient,
        cfg: ZammadConfig,
        *,
        clock: Callable[[], float] = time.time,
        observer: Observer | None = None,
        on_state: Callable[[State], None] | None = None,
        journal: Journal | None = None,
        max_in_memory: int = 50_000,
        error_id_retries: int = 5,
        housekeeping_interval: float = 5.0,
        acks: AckBatch | None = None,
        checkpoints: bool = True,
    ) -> None:
        """``outbox`` may be one route's lane (:meth:`Outbox.lane`); the deliveries of all
        routes then share one ``acks`` batch, so every route's acks ride in the next commit of
        any route, and exactly one of them runs the WAL ``checkpoints`` of the shared file.
        """
        self._outbox = outbox
        self._cfg = cfg
        self._clock = clock
        self.observer = observer
        self._hk_interval = housekeeping_interval
        self._kick = Kick()
        self._acks = acks if acks is not None else AckBatch(outbox)
        self._checkpoints = checkpoints
        self._lanes = Lanes(outbox, self._acks, max_in_memory=max_in_memory)
        self._answers = AnswerWaiters(journal.done if journal is not None else None)
        self._journal = journal
        self._gate = HealthGate(cfg, self._probe_once, self._kick, clock=clock)
        self._gate.on_state = on_state
        self._sender = Sender(
            outbox,
            client,
            cfg,
            (self._lanes, self._acks, self._answers, self._gate),
            self._observe,
            clock=clock,
            error_id_retries=error_id_retries,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._written = asyncio.Event()  # the outbox was written since the last checkpoint
        self._running = False

    # -- public API --------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._gate.state

    @property
    def on_state(self) -> Callable[[State], None] | None:
        """Called on every change of ``state``."""
        return self._gate.on_state

    @on_state.setter
    def on_state(self, callback: Callable[[State], None] | None) -> None:
        self._gate.on_state = callback

    @property
    def posted(self) -> int:
        """Events Zammad accepted since this object was made."""
        return self._sender.stats.posted

    async def start(self) -> None:
        """Queue everything the outbox holds (a previous run's events first) and start sending."""
        if self._running:
            return
        self._running = True
        if self._checkpoints:
            self._outbox.on_commit = self._written.set
        self._lanes.load()
        if len(self._lanes):
            log.info("delivering %d event(s) left in the outbox", self._outbox.count())
        self._tasks = [
            asyncio.create_task(self._worker(), name=f"zammad-delivery-{i}")
            for i in range(max(1, self._cfg.concurrency))
        ]
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="zammad-housekeeping"))
        if self._checkpoints:
            self._tasks.append(
                asyncio.create_task(self._checkpoint_wal(), name="outbox-checkpoint")
            )
        self._gate.open()

    async def stop(self, grace: float = 5.0) -> None:
        """Let posts in flight finish for up to ``grace`` s; everything else stays in the outbox."""
        if not self._running:
            return
        self._running = False
        self._lanes.halt()
        self._written.set()
        prober = self._gate.close()
        self._kick.all()
        tasks, self._tasks = self._tasks, []
        if prober is not None:
            tasks.append(prober)
        _, late = await asyncio.wait(tasks, timeout=grace) if tasks else (set(), set())
        for t in late:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._acks.flush()
        if self._checkpoints:
            self._outbox.on_commit = None
        self._answers.close()
        self._lanes.clear()

    def submit(self, event: CtiEvent) -> None:
        """Commit ``event`` to the outbox, then wake a sender (called from the AMI consumer)."""
        self._submit([event])

    def submit_many(self, events: Iterable[CtiEvent]) -> list[int]:
        """Commit ``events`` in one transaction; returns their outbox ids, in order."""
        return self._submit(list(events))

    async def wait_answer(self, rid: int, timeout: float) -> ZammadAnswer | None:
        """Zammad's answer to an event already submitted (AMI-only reject); None if not seen.

        Registered after the submit: if the post finished before we look, the answer is gone
        and we give up, which is fine for a best-effort reject.
        """
        if not self._running or rid not in self._lanes:
            return None
        return await self._answers.wait(rid, timeout)

    def watch_answer(self, rid: int, callback: Watch, timeout: float) -> None:
        """Call ``callback(answer)`` if event ``rid`` is delivered within ``timeout`` seconds."""
        pending = self._running and rid in self._lanes
        self._answers.watch(rid, callback, timeout, pending=pending)

    async def submit_and_wait(self, event: CtiEvent, timeout: float) -> ZammadAnswer | None:
        """Commit, post ahead of the backlog, and wait at most ``timeout`` for Zammad's answer.

        None on timeout or while Zammad is not healthy: the event stays queued and goes out later,
        but the caller (the FastAGI hook, holding a ringing call) must not wait for it.
        """
        (rid,) = self._submit([event], priority=True)
        if self._gate.state is not State.OK:
            return None
        return await self.wait_answer(rid, timeout)

    def status(self) -> dict[str, Any]:
        stats = self._sender.stats
        self._acks.flush()  # shared by all routes: count this lane's rows without them
        return {
            "state": self._gate.state,
            "url": self._cfg.display_url,
            "proxy": self._cfg.display_proxy,
            "last_error": stats.last_error,
            "last_ok_at": self._gate.last_ok_at,
            "posted": stats.posted,
            "retries": stats.retries,
            "dead": stats.dead,
            "in_flight": stats.in_flight,
            "pending": self._outbox.count(),
            "oldest_age_s": self._outbox.oldest_age(self._clock()),
        }

    # -- internals ---------------------------------------------------------------------------

    def _submit(self, events: list[CtiEvent], *, priority: bool = False) -> list[int]:
        ids = self._acks.put_many(events)  # the acks due this loop pass ride in this commit
        if self._journal is not None:
            self._journal.committed(ids, events)
        if not self._running or not ids:
            return ids
        self._lanes.committed(ids, events, self._clock())
        if priority:
            for cid in dict.fromkeys(call_id(e) for e in events):
                self._lanes.hurry(cid)
        return ids

    async def _worker(self) -> None:
        while self._running:
            if self._gate.state is not State.OK:
                await self._gate.wait_healthy()  # the prober has the only request slot
                continue
            picked = await self._lanes.next_ready()
            if picked is not None:
                await self._sender.step_safely(*picked)

    async def _probe_once(self) -> None:
        """Post one event for the prober; heads that need no request (expired, of a dead call)
        are skipped."""
        while self._running and self._gate.state is not State.OK:
            picked = await self._lanes.next_ready()
            if picked is not None and await self._sender.step_safely(*picked):
                return

    def _observe(self, name: str, result: str, latency: float) -> None:
        if self.observer is not None:
            try:
                self.observer(name, result, latency)
            except Exception:  # a metrics bug must not stop delivery
                log.exception("delivery observer failed")

    async def _housekeeping(self) -> None:
        while self._running:
            await self._kick.pause(self._hk_interval)
            if not self._running:
                return
            try:
                self._sender.expire_idle()
                self._lanes.load()
            except Exception:
                log.exception("outbox housekeeping failed")

    async def _checkpoint_wal(self) -> None:
        """Checkpoint the WAL off the event loop (Outbox(background_checkpoint=True)).

        Sleeps until the outbox was written, then checkpoints at most once a second.
        """
        while self._running:
            await self._written.wait()
            if not self._running:
                return
            self._written.clear()
            try:
                await asyncio.to_thread(self._outbox.checkpoint)
            except Exception:
                log.exception("outbox checkpoint failed")
            await self._kick.pause(CHECKPOINT_INTERVAL_S)

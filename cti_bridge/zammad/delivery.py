"""Deliver outbox events to Zammad: nothing lost, each call in order, nothing repeated blindly.

Order. One call's events go out one at a time in outbox id order, so ``answer``/``hangup`` are
never posted before that call's ``newCall`` was accepted; different calls are delivered
concurrently by ``cfg.concurrency`` workers. A call is in the ready queue at most once. On
``start()`` the whole outbox (events of a previous run, kill -9 included) is queued again.

Retry policy (Zammad is not idempotent for answer/hangup, docs/zammad-cti.md §5):

- Connection refused/reset, timeouts, 429, 5xx -> Zammad is "down": the workers park and one
  prober task takes over, a ``tenacity.AsyncRetrying`` loop that sends one request at a time
  spaced by exponential waits with full jitter (capped at ``cfg.max_backoff``), so a backlog
  does not hammer a sick server. The event stays at the head of its call and is tried again;
  the first accepted post ends the loop and releases the workers.
- A retried ``newCall`` answered 500 "already exists" was stored by an earlier try: delivered.
- ``answer``/``hangup`` are repeated only when the request may not have been processed: no
  connection, a timeout (a proxy drops a request whose client has gone), 429/502/503/504, or a
  5xx page that is not Zammad's own JSON error (with ``Accept: application/json`` Rails answers
  JSON, so an HTML 500 comes from something in front of it). A 5xx carrying Zammad's JSON error
  means Zammad ran the request: the event is dead-lettered, not repeated, except
  500 "Error ID" (Zammad knows no such call_id), retried ``error_id_retries`` times for that
  call only (``ERROR_ID_RETRY_S`` apart, at most ``cfg.max_backoff``), then dead-lettered.
- 401/403/404/3xx, and 422 "Feature is disabled/not configured" -> configuration ("rejected"):
  events are kept and the same prober probes every ``cfg.config_retry_interval``, so fixing
  Zammad's side drains the backlog. A 422 about this event itself ("Invalid 'direction'",
  "Error ID") is retried at that slow pace for this call only: nothing was stored, and it must
  not stall other calls.
- An event older than ``cfg.max_age`` goes to the dead-letter table (ERROR log). When a call's
  ``newCall`` goes there, its other events follow (Zammad would answer them 500), also those
  arriving later, until a ``newCall`` for that call is queued again (``spool retry``).

Memory holds at most ``max_in_memory`` events; the rest stays in SQLite and is paged in by id,
so per-call order is kept. A housekeeping task also picks up rows another process put back
(``cti-bridge spool retry``) and expires old events while Zammad is unreachable. The WAL
checkpoint task sleeps until something was written: an idle daemon does not wake for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import tenacity

from cti_bridge.config import ZammadConfig
from cti_bridge.events import CtiEvent, call_id
from cti_bridge.outbox.store import Outbox, Row
from cti_bridge.zammad.client import (
    NO_ACTION,
    ZammadAnswer,
    ZammadClient,
    ZammadError,
    ZammadRejected,
)

log = logging.getLogger(__name__)


class State(StrEnum):
    """Zammad's health as delivery sees it (``status()["state"]``, the sd_notify STATUS line)."""

    OK = "ok"
    DOWN = "down"  # unreachable, timing out, 429/5xx: probed with exponential backoff
    REJECTED = "rejected"  # refuses the bridge's configuration: probed every config_retry_interval


Observer = Callable[[str, str, float], None]
"""``observer(event_name, result, latency_s)``; result is one of RESULTS."""
RESULTS = ("ok", "reject", "dial", "duplicate", "unavailable", "rejected", "failed", "dead")

_SAFE_TO_REPEAT = frozenset({429, 502, 503, 504})
_MAX_DEAD_CALLS = 10_000
CHECKPOINT_INTERVAL_S = 1.0  # at most one WAL checkpoint a second, and none without writes
#: Pace of the bounded retries of an event Zammad answered 500 "Error ID" (no such call yet).
ERROR_ID_RETRY_S = 1.0


class _Unhealthy(Exception):
    """Raised inside the prober's tenacity loop while Zammad is not healthy: try again later."""


@dataclass
class _Call:
    rows: deque[Row] = field(default_factory=deque)
    scheduled: bool = False  # in the ready queue, in flight, or waiting on a per-call timer
    busy: bool = False


class Delivery:
    def __init__(
        self,
        outbox: Outbox,
        client: ZammadClient,
        cfg: ZammadConfig,
        *,
        clock: Callable[[], float] = time.time,
        observer: Observer | None = None,
        on_state: Callable[[State], None] | None = None,
        max_in_memory: int = 50_000,
        error_id_retries: int = 5,
        housekeeping_interval: float = 5.0,
    ) -> None:
        self._outbox = outbox
        self._client = client
        self._cfg = cfg
        self._clock = clock
        self.observer = observer
        self.on_state = on_state  # called on every change of ``state``
        self._max_mem = max_in_memory
        self._error_id_retries = error_id_retries
        self._hk_interval = housekeeping_interval
        self._retry_delay = min(ERROR_ID_RETRY_S, cfg.max_backoff)
        # "Full jitter": uniform in [0, min(max_backoff, 2**attempt)], so several bridges (or a
        # restart) do not probe a recovering Zammad in step.
        self._down_wait = tenacity.wait_random_exponential(multiplier=1.0, max=cfg.max_backoff)

        self._calls: dict[str, _Call] = {}
        self._ids: set[int] = set()
        self._loaded_upto = 0
        self._disk_backlog = False
        self._ready: deque[str] = deque()
        self._work = asyncio.Event()
        self._kick = asyncio.Event()
        self._waiters: dict[int, asyncio.Future[ZammadAnswer | None]] = {}
        self._watches: dict[int, tuple[float, Callable[[ZammadAnswer], None]]] = {}
        self._error_ids: dict[int, int] = {}
        self._dead_calls: OrderedDict[str, None] = OrderedDict()
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._prober: asyncio.Task[None] | None = None
        self._healthy_again = asyncio.Event()
        self._written = asyncio.Event()  # the outbox was written since the last checkpoint
        self._running = False
        self._stopping = False

        self._state = State.OK
        self.last_error: str | None = None
        self.last_ok_at: float | None = None
        self.posted = 0
        self.retries = 0
        self.dead = 0
        self.in_flight = 0
        self._acks: list[int] = []
        self._ack_flush_due = False  # a _flush_acks is scheduled for this loop pass

    # -- public API --------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    async def start(self) -> None:
        """Queue everything the outbox holds (a previous run's events first) and start sending."""
        if self._running:
            return
        self._running, self._stopping = True, False
        self._outbox.on_commit = self._written.set
        self._load()
        if self._ids:
            log.info("delivering %d event(s) left in the outbox", self._outbox.count())
        self._tasks = [
            asyncio.create_task(self._worker(), name=f"zammad-delivery-{i}")
            for i in range(max(1, self._cfg.concurrency))
        ]
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="zammad-housekeeping"))
        self._tasks.append(asyncio.create_task(self._checkpoints(), name="outbox-checkpoint"))
        if self._state is State.OK:
            self._healthy_again.set()
        else:  # stopped while Zammad was unhealthy: keep probing before the workers go
            self._start_prober()

    async def stop(self, grace: float = 5.0) -> None:
        """Let posts in flight finish for up to ``grace`` s; everything else stays in the outbox."""
        if not self._running:
            return
        self._running, self._stopping = False, True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._work.set()
        self._written.set()
        self._healthy_again.set()
        self._kick_all()
        tasks, self._tasks = self._tasks, []
        if self._prober is not None:
            tasks.append(self._prober)
            self._prober = None
        _, late = await asyncio.wait(tasks, timeout=grace) if tasks else (set(), set())
        for t in late:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._flush_acks()
        self._outbox.on_commit = None
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_result(None)
        self._watches.clear()
        self._calls.clear()
        self._ids.clear()
        self._ready.clear()
        self._loaded_upto = 0

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
        if not self._running or rid not in self._ids:
            return None
        fut: asyncio.Future[ZammadAnswer | None] = asyncio.get_running_loop().create_future()
        self._waiters[rid] = fut
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            return None
        finally:
            self._waiters.pop(rid, None)

    def watch_answer(
        self, rid: int, callback: Callable[[ZammadAnswer], None], timeout: float
    ) -> None:
        """Call ``callback(answer)`` if event ``rid`` is delivered within ``timeout`` seconds.

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
        if self._running and rid in self._ids:
            watches[rid] = (now + timeout, callback)

    async def submit_and_wait(self, event: CtiEvent, timeout: float) -> ZammadAnswer | None:
        """Commit, post ahead of the backlog, and wait at most ``timeout`` for Zammad's answer.

        None on timeout or while Zammad is not healthy: the event stays queued and goes out later,
        but the caller (the FastAGI hook, holding a ringing call) must not wait for it.
        """
        (rid,) = self._submit([event], priority=True)
        if self._state is not State.OK:
            return None
        return await self.wait_answer(rid, timeout)

    def status(self) -> dict[str, Any]:
        return {
            "state": self._state,
            "url": self._cfg.display_url,
            "proxy": self._cfg.display_proxy,
            "last_error": self.last_error,
            "last_ok_at": self.last_ok_at,
            "posted": self.posted,
            "retries": self.retries,
            "dead": self.dead,
            "in_flight": self.in_flight,
            "pending": self._outbox.count() - len(self._acks),
            "oldest_age_s": self._outbox.oldest_age(self._clock()),
        }

    # -- queueing ----------------------------------------------------------------------------

    def _submit(self, events: list[CtiEvent], *, priority: bool = False) -> list[int]:
        acks, self._acks = self._acks, []  # acks due this loop pass ride in the same commit
        try:
            ids = self._outbox.put_many(events, acks=acks)
        except BaseException:
            self._acks[:0] = acks  # not committed: they stay due
            raise
        if not self._running or not ids:
            return ids
        if (
            not self._disk_backlog
            and ids[0] == self._loaded_upto + 1
            and len(self._ids) + len(ids) <= self._max_mem
        ):
            # Nothing else was written since our last look: take them straight in.
            for rid, event in zip(ids, events, strict=True):
                self._enqueue(Row(rid, call_id(event), event, self._clock()))
            self._loaded_upto = ids[-1]
        else:
            self._load()  # another process wrote rows, or memory is full: keep id order
        if priority:
            for cid in dict.fromkeys(call_id(e) for e in events):
                self._hurry(cid)
        return ids

    def _hurry(self, cid: str) -> None:
        """Put ``cid`` at the head of the ready queue, with all its rows in memory."""
        self._flush_acks()
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

    def _load(self) -> None:
        """Page rows in from disk in id order while there is room."""
        while (room := self._max_mem - len(self._ids)) > 0:
            self._flush_acks()
            rows = self._outbox.pending(min(room, 5000), after=self._loaded_upto)
            if not rows:
                break
            for row in rows:
                if row.id not in self._ids:
                    self._enqueue(row)
            self._loaded_upto = rows[-1].id
        self._disk_backlog = self._outbox.max_id() > self._loaded_upto

    def _enqueue(self, row: Row, *, front: bool = False) -> None:
        call = self._calls.get(row.call_id)
        if call is None:
            call = self._calls[row.call_id] = _Call()
        call.rows.append(row)
        self._ids.add(row.id)
        if not call.scheduled:
            call.scheduled = True
            (self._ready.appendleft if front else self._ready.append)(row.call_id)
            self._work.set()

    def _reschedule(self, cid: str, call: _Call, *, front: bool = False) -> None:
        if call.rows:
            (self._ready.appendleft if front else self._ready.append)(cid)
            self._work.set()
        else:
            call.scheduled = False
            del self._calls[cid]

    def _later(self, cid: str, delay: float) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            call = self._calls.get(cid)
            if call is not None:
                self._reschedule(cid, call)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def _forget(self, row: Row, answer: ZammadAnswer | None) -> None:
        self._ids.discard(row.id)
        self._error_ids.pop(row.id, None)
        fut = self._waiters.get(row.id)
        if fut is not None and not fut.done():
            fut.set_result(answer)
        if self._watches:
            watch = self._watches.pop(row.id, None)
            if watch is not None and answer is not None and time.monotonic() <= watch[0]:
                try:
                    watch[1](answer)
                except Exception:  # the watcher's bug must not stop delivery
                    log.exception("answer watch for event %d failed", row.id)

    # -- the workers -------------------------------------------------------------------------

    async def _pause(self, seconds: float) -> None:
        kick = self._kick
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(kick.wait(), seconds)

    def _kick_all(self) -> None:
        self._kick.set()
        self._kick = asyncio.Event()

    async def _worker(self) -> None:
        while not self._stopping:
            if self._state is not State.OK:
                await self._healthy_again.wait()  # the prober has the only request slot
                continue
            picked = await self._next_ready()
            if picked is not None:
                await self._step_safely(*picked)

    async def _next_ready(self) -> tuple[str, _Call] | None:
        """The next call with an event to send; None after waiting for work (look again)."""
        if self._disk_backlog and len(self._ids) < self._max_mem // 2:
            self._load()
        if not self._ready:
            self._work.clear()
            await self._work.wait()
            return None
        cid = self._ready.popleft()
        call = self._calls.get(cid)
        if call is None:
            return None
        if not call.rows:
            self._reschedule(cid, call)
            return None
        return cid, call

    async def _step_safely(self, cid: str, call: _Call) -> bool:
        """``_step``, but a bug or a failing disk only delays this call; True if it posted."""
        try:
            return await self._step(cid, call)
        except Exception as exc:
            log.exception("delivering call %r failed unexpectedly; will retry", cid)
            self.last_error = f"internal error: {type(exc).__name__}"
            if self._calls.get(cid) is call and cid not in self._ready:
                self._later(cid, self._retry_delay)
            return False

    # -- the prober: the only sender while Zammad is not healthy -----------------------------

    def _start_prober(self) -> None:
        if not self._running:  # a post that failed during stop(): the next start() probes
            return
        self._healthy_again.clear()
        if self._prober is None or self._prober.done():
            self._prober = asyncio.create_task(self._probe(), name="zammad-prober")

    async def _probe(self) -> None:
        """Retry with tenacity until Zammad accepts a post again, one request at a time.

        Attempt 1 is the post that just failed, so the loop starts with a wait. Every later
        attempt posts the head of the next ready call. The wait follows the state: exponential
        with jitter while Zammad is down, ``config_retry_interval`` while it rejects the bridge.
        """
        retrying = tenacity.AsyncRetrying(
            wait=self._probe_wait,
            retry=tenacity.retry_if_exception_type(_Unhealthy),
            sleep=self._pause,
        )
        async for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    await self._probe_once()
                if self._state is not State.OK and not self._stopping:
                    raise _Unhealthy(self._state)

    def _probe_wait(self, retry_state: tenacity.RetryCallState) -> float:
        if self._state is State.REJECTED:
            return self._cfg.config_retry_interval
        return float(self._down_wait(retry_state))

    async def _probe_once(self) -> None:
        """Post one event; heads that need no request (expired, of a dead call) are skipped."""
        while not self._stopping and self._state is not State.OK:
            picked = await self._next_ready()
            if picked is not None and await self._step_safely(*picked):
                return

    async def _step(self, cid: str, call: _Call) -> bool:
        """Post the head event of ``cid`` (or dead-letter it); True if a request was made."""
        row = call.rows[0]
        if self._expired(row):
            self._dead_letter(cid, call, row, f"older than max_age ({self._cfg.max_age:.0f} s)")
            self._reschedule(cid, call)
            return False
        if row.name == "newCall":
            self._dead_calls.pop(cid, None)
        elif cid in self._dead_calls:
            self._dead_letter(cid, call, row, "this call's newCall was dead-lettered")
            self._reschedule(cid, call)
            return False

        call.busy = True
        self.in_flight += 1
        t0 = time.perf_counter()
        try:
            answer = await self._client.post(row.event)
        except ZammadError as err:
            self._on_error(cid, call, row, err, time.perf_counter() - t0)
        else:
            self._delivered(
                cid,
                call,
                row,
                answer,
                answer.action if answer.action != "none" else "ok",
                time.perf_counter() - t0,
            )
        finally:
            self.in_flight -= 1
            call.busy = False
        return True

    def _delivered(
        self, cid: str, call: _Call, row: Row, answer: ZammadAnswer, result: str, dt: float
    ) -> None:
        # Acks are batched: a commit each cost more than the rest of the bookkeeping. Those of
        # one loop pass are committed together at its end, or ride in an enqueue's transaction
        # if one comes first; every read of the outbox flushes them first. Not later than that:
        # an ack lost to a crash means a repeated post, and a repeated hangup can turn a missed
        # call into a handled one in Zammad (see README, Limits).
        self._acks.append(row.id)
        if not self._ack_flush_due:
            self._ack_flush_due = True
            asyncio.get_running_loop().call_soon(self._flush_acks)
        call.rows.popleft()
        self._forget(row, answer)
        self.posted += 1
        self._healthy()
        self._observe(row.name, result, dt)
        self._reschedule(cid, call)

    def _flush_acks(self) -> None:
        self._ack_flush_due = False
        if self._acks:
            ids, self._acks = self._acks, []
            try:
                self._outbox.ack_many(ids)
            except (sqlite3.Error, OSError) as exc:
                # Kept for the next flush; lost only if the daemon stops first, and then the
                # events are posted again after the restart (at least once).
                self._acks[:0] = ids
                log.error("cannot record %d delivered event(s) in the spool: %s", len(ids), exc)

    def _on_error(self, cid: str, call: _Call, row: Row, err: ZammadError, dt: float) -> None:
        name = row.name
        what = f"{name} of call {cid!r}"
        if name == "newCall" and err.already_exists:
            log.info("%s was already stored by an earlier try: delivered", what)
            self._delivered(cid, call, row, NO_ACTION, "duplicate", dt)
            return
        self.last_error = f"{name}: {err.reason}"
        self._outbox.record_failure(row.id, err.reason)
        if isinstance(err, ZammadRejected):
            self._observe(name, "rejected", dt)
            if err.status_code == 422 and not _feature_off(err):
                # Zammad refused this very event; nothing was stored. Slow retry, this call only.
                log.error(
                    "Zammad refused %s: %s; retrying every %.0f s",
                    what,
                    err.reason,
                    self._cfg.config_retry_interval,
                )
                self._retry_call_later(cid, call, row, self._cfg.config_retry_interval)
                return
            self._set_rejected(err)
            self._ready.appendleft(cid)
            return
        self._observe(name, "unavailable", dt)
        if name != "newCall" and err.error is not None and err.status_code is not None:
            # Zammad's application answered: it ran the request.
            if err.error_id and err.status_code == 500:
                n = self._error_ids[row.id] = self._error_ids.get(row.id, 0) + 1
                if n >= self._error_id_retries:
                    self._dead_letter(
                        cid, call, row, f"Zammad knows no such call ({n} tries: {err.reason})"
                    )
                    self._reschedule(cid, call)
                    return
                self._retry_call_later(cid, call, row, self._retry_delay)
                return
            if err.status_code not in _SAFE_TO_REPEAT:
                self._dead_letter(
                    cid, call, row, f"not repeated: Zammad may have processed it ({err.reason})"
                )
                self._reschedule(cid, call)
                return
        self._set_down(err)
        self._ready.appendleft(cid)

    def _retry_call_later(self, cid: str, call: _Call, row: Row, delay: float) -> None:
        self.retries += 1
        call.rows[0] = replace(row, attempts=row.attempts + 1)
        self._later(cid, delay)

    def _dead_letter(self, cid: str, call: _Call, row: Row, reason: str) -> None:
        whole_call = row.name == "newCall"
        if whole_call:
            self._flush_acks()
            ids = self._outbox.dead_letter(call=cid, reason=reason)
            gone = list(call.rows)
            call.rows.clear()
            self._dead_calls[cid] = None
            if len(self._dead_calls) > _MAX_DEAD_CALLS:
                self._dead_calls.popitem(last=False)
        else:
            ids = self._outbox.dead_letter(row.id, reason)
            gone = [call.rows.popleft()]
        for r in gone:
            self._forget(r, None)
            self._observe(r.name, "dead", 0.0)
        self.dead += len(ids)
        log.error(
            "DEAD-LETTERED %d event(s) of call %r (%s): %s. They are kept in the spool; "
            "see `cti-bridge spool list --dead`, retry with `cti-bridge spool retry`",
            len(ids),
            cid,
            ", ".join(r.name for r in gone) or row.name,
            reason,
        )

    def _expired(self, row: Row) -> bool:
        return self._clock() - row.created_at > self._cfg.max_age

    # -- health ------------------------------------------------------------------------------

    def _set_state(self, state: State) -> None:
        self._state = state
        if self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:  # a status bug must not stop delivery
                log.exception("delivery state callback failed")

    def _healthy(self) -> None:
        self.last_ok_at = self._clock()
        if self._state is not State.OK:
            log.warning("Zammad at %s accepts events again", self._cfg.display_url)
            self._set_state(State.OK)
            self._healthy_again.set()
            self._kick_all()  # the prober's wait ends; it sees the state and returns

    def _set_down(self, err: ZammadError) -> None:
        self.retries += 1
        if self._state is not State.DOWN:
            log.warning(
                "Zammad at %s unavailable (%s); events are kept and retried",
                self._cfg.display_url,
                err.reason,
            )
            self._set_state(State.DOWN)
        self._start_prober()

    def _set_rejected(self, err: ZammadError) -> None:
        self.retries += 1
        if self._state is not State.REJECTED:
            log.error(
                "Zammad at %s rejects the bridge (%s): check the token/URL and that the Generic "
                "CTI integration is enabled. Events are kept; retrying every %.0f s",
                self._cfg.display_url,
                err.reason,
                self._cfg.config_retry_interval,
            )
            self._set_state(State.REJECTED)
        self._start_prober()

    def _observe(self, name: str, result: str, latency: float) -> None:
        if self.observer is not None:
            try:
                self.observer(name, result, latency)
            except Exception:  # a metrics bug must not stop delivery
                log.exception("delivery observer failed")

    # -- housekeeping ------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        while not self._stopping:
            await self._pause(self._hk_interval)
            if self._stopping:
                return
            try:
                self._expire_idle()
                self._load()
            except Exception:
                log.exception("outbox housekeeping failed")

    async def _checkpoints(self) -> None:
        """Checkpoint the WAL off the event loop (Outbox(background_checkpoint=True)).

        Sleeps until the outbox was written, then checkpoints at most once a second.
        """
        while not self._stopping:
            await self._written.wait()
            if self._stopping:
                return
            self._written.clear()
            try:
                await asyncio.to_thread(self._outbox.checkpoint)
            except Exception:
                log.exception("outbox checkpoint failed")
            await self._pause(CHECKPOINT_INTERVAL_S)

    def _expire_idle(self) -> None:
        """Dead-letter over-age heads of calls not being sent (Zammad may be down for days)."""
        for cid, call in list(self._calls.items()):
            while call.rows and not call.busy and self._expired(call.rows[0]):
                row = call.rows[0]
                self._dead_letter(cid, call, row, f"older than max_age ({self._cfg.max_age:.0f} s)")
            # An emptied call stays scheduled; the worker that pops it drops it.


def _feature_off(err: ZammadError) -> bool:
    text = (err.error or "").lower()
    return "disabled" in text or "not configured" in text

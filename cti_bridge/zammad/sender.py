"""Post a call's head event and carry out the retry policy's verdict on it.

The verdicts come from ``policy`` (pure, tested as a table); this module only does what they
say: ack a delivered event, park the call on a timer, hand over to the health gate's prober,
or move events to the dead-letter table, and count all of it for ``status()`` and the metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from cti_bridge.config import ZammadConfig
from cti_bridge.outbox.store import Outbox, Row
from cti_bridge.zammad.acks import AckBatch
from cti_bridge.zammad.answers import NO_ACTION, ZammadAnswer
from cti_bridge.zammad.client import ZammadClient
from cti_bridge.zammad.errors import ZammadError, ZammadRejected
from cti_bridge.zammad.health import HealthGate
from cti_bridge.zammad.lanes import Lane, Lanes
from cti_bridge.zammad.policy import (
    Event,
    Limits,
    Verdict,
    after_post,
    before_post,
    dead_reason,
    expired,
    unknown_call,
)
from cti_bridge.zammad.waiters import AnswerWaiters

log = logging.getLogger(__name__)

#: Pace of the bounded retries of an event Zammad answered 500 "Error ID" (no such call yet).
ERROR_ID_RETRY_S = 1.0

Observe = Callable[[str, str, float], None]


@dataclass
class Stats:
    """Counters for ``status()`` and the metrics."""

    last_error: str | None = None
    """The last failed post's event and reason (the URL and token never appear in it)."""
    posted: int = 0
    """Events Zammad accepted (duplicates of a stored newCall included)."""
    retries: int = 0
    """Failed posts whose event is kept to be sent again."""
    dead: int = 0
    """Events moved to the dead-letter table."""
    in_flight: int = 0
    """Posts waiting for Zammad's answer now (the only counter that goes down)."""


class Sender:
    """Sends one head event at a time per call; everything a post's outcome changes."""

    def __init__(
        self,
        outbox: Outbox,
        client: ZammadClient,
        cfg: ZammadConfig,
        parts: tuple[Lanes, AckBatch, AnswerWaiters, HealthGate],
        observe: Observe,
        *,
        clock: Callable[[], float],
        error_id_retries: int,
    ) -> None:
        self._outbox = outbox
        self._client = client
        self._cfg = cfg
        self._lanes, self._acks, self._answers, self._gate = parts
        self._observe = observe
        self._clock = clock
        self._limits = Limits(cfg.max_age, error_id_retries)
        self.retry_delay = min(ERROR_ID_RETRY_S, cfg.max_backoff)
        self.stats = Stats()

    async def step_safely(self, cid: str, lane: Lane) -> bool:
        """``step``, but a bug or a failing disk only delays this call; True if it posted."""
        try:
            return await self.step(cid, lane)
        except Exception as exc:
            log.exception("delivering call %r failed unexpectedly; will retry", cid)
            self.stats.last_error = f"internal error: {type(exc).__name__}"
            self._lanes.later_unless_queued(cid, lane, self.retry_delay)
            return False

    async def step(self, cid: str, lane: Lane) -> bool:
        """Post the head event of ``cid`` (or dead-letter it); True if a request was made."""
        row = lane.rows[0]
        name = row.name
        facts = Event(name, self._clock() - row.created_at, call_dead=self._lanes.is_dead(cid))
        if before_post(facts, self._limits) is Verdict.DEAD:
            self.dead_letter(cid, lane, row, dead_reason(None, facts, self._limits))
            self._lanes.reschedule(cid, lane)
            return False
        if name == "newCall":
            self._lanes.revive(cid)

        lane.busy = True
        self.stats.in_flight += 1
        t0 = time.perf_counter()
        try:
            answer = await self._client.post(row.event)
        except ZammadError as err:
            self._failed(cid, lane, row, err, time.perf_counter() - t0)
        else:
            result = answer.action if answer.action != "none" else "ok"
            self._delivered(cid, lane, row, answer, result, time.perf_counter() - t0)
        finally:
            self.stats.in_flight -= 1
            lane.busy = False
        return True

    def _delivered(
        self, cid: str, lane: Lane, row: Row, answer: ZammadAnswer, result: str, dt: float
    ) -> None:
        self._acks.add(row.id)
        lane.rows.popleft()
        self._forget(row, answer)
        self.stats.posted += 1
        self._gate.accepted()
        self._observe(row.name, result, dt)
        self._lanes.reschedule(cid, lane)

    def _failed(self, cid: str, lane: Lane, row: Row, err: ZammadError, dt: float) -> None:
        name = row.name
        tries = self._lanes.count_error_id(row.id) if unknown_call(name, err) else 0
        facts = Event(name, error_ids=tries)
        verdict = after_post(err, facts, self._limits)
        if verdict is Verdict.DELIVERED:
            log.info("%s of call %r was already stored by an earlier try: delivered", name, cid)
            self._delivered(cid, lane, row, NO_ACTION, "duplicate", dt)
            return
        self.stats.last_error = f"{name}: {err.reason}"
        self._outbox.record_failure(row.id, err.reason)
        refused = isinstance(err, ZammadRejected)
        self._observe(name, "rejected" if refused else "unavailable", dt)
        if verdict is Verdict.DEAD:
            self.dead_letter(cid, lane, row, dead_reason(err, facts, self._limits))
            self._lanes.reschedule(cid, lane)
            return
        self.stats.retries += 1
        if verdict is Verdict.RETRY_CALL:
            delay = self._cfg.config_retry_interval if refused else self.retry_delay
            if refused:
                log.error(
                    "Zammad refused %s of call %r: %s; retrying every %.0f s",
                    name,
                    cid,
                    err.reason,
                    delay,
                )
            lane.rows[0] = replace(row, attempts=row.attempts + 1)
            self._lanes.later(cid, delay)
            return
        if verdict is Verdict.REFUSED:
            self._gate.refused(err)
        else:
            self._gate.went_down(err)
        self._lanes.first(cid)

    def dead_letter(self, cid: str, lane: Lane, row: Row, reason: str) -> None:
        """Move ``row`` to the dead-letter table; a ``newCall`` takes its whole call along."""
        if row.name == "newCall":
            self._acks.flush()
            ids = self._outbox.dead_letter(call=cid, reason=reason)
            gone = list(lane.rows)
            lane.rows.clear()
            self._lanes.mark_dead(cid)
        else:
            ids = self._outbox.dead_letter(row.id, reason)
            gone = [lane.rows.popleft()]
        for r in gone:
            self._forget(r, None)
            self._observe(r.name, "dead", 0.0)
        self.stats.dead += len(ids)
        log.error(
            "DEAD-LETTERED %d event(s) of call %r (%s): %s. They are kept in the outbox; "
            "see `cti-bridge outbox list --dead`, retry with `cti-bridge outbox retry`",
            len(ids),
            cid,
            ", ".join(r.name for r in gone) or row.name,
            reason,
        )

    def expire_idle(self) -> None:
        """Dead-letter over-age heads of calls not being sent (Zammad may be down for days)."""
        now = self._clock()
        for cid, lane in self._lanes.idle():
            while lane.rows and not lane.busy:
                row = lane.rows[0]
                facts = Event(row.name, now - row.created_at)
                if not expired(facts, self._limits):
                    break
                self.dead_letter(cid, lane, row, dead_reason(None, facts, self._limits))
            # An emptied lane stays scheduled; the worker that pops it drops it.

    def _forget(self, row: Row, answer: ZammadAnswer | None) -> None:
        self._lanes.forget(row)
        self._answers.resolve(row.id, answer)

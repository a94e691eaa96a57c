"""The caller log of the last N calls, as the bridge posted them (or would post them).

Fed by delivery as events are committed to the outbox and as Zammad answers them (or they are
dead-lettered); read by ``/calls``, ``cti-bridge status`` and the demo. The outbox cannot serve
this: a delivered event leaves ``pending`` at its ack, and nothing keeps it afterwards. So this
is a small view of its own, in memory, bounded to the newest ``size`` calls, and outside the
call model (which stays pure).

The columns are those of Zammad's caller log
(docs/zammad-cti.md#4-the-call-log-and-what-makes-a-call-missed): direction, from, to, users,
queue, state, cause, waiting and talking time; next to them Zammad's answer to the newCall
(reject, or the caller ID it picked) and the delivery state of the call's events.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from cti_bridge.events import CtiEvent, call_id

DEFAULT_SIZE = 200


class DeliveryState(StrEnum):
    """Where a call's events are: all stored by Zammad, some still queued, some dead-lettered,
    or never to be posted (``cti-bridge run --dry-run``)."""

    DELIVERED = "delivered"
    WAITING = "waiting"
    DEAD = "dead"
    DRY_RUN = "dry run"


class Answer(Protocol):
    """What :class:`~cti_bridge.zammad.answers.ZammadAnswer` offers this view."""

    @property
    def action(self) -> str: ...

    @property
    def caller_id(self) -> str | None: ...


@dataclass
class CallEntry:
    """One row of the caller log."""

    call_id: str
    direction: str
    from_: str
    to: str
    users: list[str] = field(default_factory=list)
    queue: str = ""
    state: str = "newCall"  # the last event: newCall (ringing), answer, hangup
    cause: str = ""
    started: float = 0.0
    answered: float | None = None
    ended: float | None = None
    zammad: str = ""  # "reject", "caller ID 4930...", "" (no action)
    waiting: set[int] = field(default_factory=set)  # outbox ids not yet stored by Zammad
    dead: int = 0
    dry_run: bool = False

    @property
    def delivery(self) -> DeliveryState:
        if self.dry_run:
            return DeliveryState.DRY_RUN
        if self.dead:
            return DeliveryState.DEAD
        return DeliveryState.WAITING if self.waiting else DeliveryState.DELIVERED

    def waiting_s(self, now: float) -> float:
        """Ringing time: until answered, or until the end when nobody answered."""
        end = self.answered or self.ended or now
        return max(0.0, end - self.started)

    def talking_s(self, now: float) -> float | None:
        if self.answered is None:
            return None
        return max(0.0, (self.ended or now) - self.answered)

    def document(self, now: float) -> dict[str, Any]:
        talking = self.talking_s(now)
        return {
            "call_id": self.call_id,
            "direction": self.direction,
            "from": self.from_,
            "to": self.to,
            "users": list(self.users),
            "queue": self.queue,
            "state": self.state,
            "cause": self.cause,
            "started_at": self.started,
            "waiting_s": round(self.waiting_s(now), 1),
            "talking_s": None if talking is None else round(talking, 1),
            "zammad": self.zammad,
            "delivery": str(self.delivery),
        }


def _text(event: CtiEvent, key: str) -> str:
    value = event.get(key, "")
    return value if isinstance(value, str) else ""


class RecentCalls:
    """The newest ``size`` calls; :meth:`changed` wakes the live page after every change."""

    def __init__(self, size: int = DEFAULT_SIZE, clock: Callable[[], float] = time.time) -> None:
        self.size = size
        self._clock = clock
        self._calls: OrderedDict[str, CallEntry] = OrderedDict()  # oldest first
        self._by_id: dict[int, str] = {}  # outbox id -> call id, while waiting
        self._newcall_ids: set[int] = set()
        self._changed = asyncio.Event()
        self.closed = False

    def committed(
        self, ids: Sequence[int], events: Sequence[CtiEvent], *, dry: bool = False
    ) -> None:
        """Events committed to the outbox (``dry``: that the dry run would have posted)."""
        now = self._clock()
        for rid, event in zip(ids, events, strict=False):
            entry = self._entry(event, now, dry)
            if entry is None:
                continue
            if not dry:
                entry.waiting.add(rid)
                self._by_id[rid] = entry.call_id
                if _text(event, "event") == "newCall":
                    self._newcall_ids.add(rid)
            self._apply(entry, event, now)
        self._notify()

    def done(self, rid: int, answer: Answer | None) -> None:
        """Event ``rid`` left the queue: stored by Zammad with ``answer``, or dead (None)."""
        cid = self._by_id.pop(rid, None)
        was_newcall = rid in self._newcall_ids
        self._newcall_ids.discard(rid)
        entry = self._calls.get(cid) if cid is not None else None
        if entry is None:
            return
        entry.waiting.discard(rid)
        if answer is None:
            entry.dead += 1
        elif was_newcall:
            entry.zammad = _answer_text(answer)
        self._notify()

    def rows(self) -> list[dict[str, Any]]:
        """The caller log, newest call first."""
        now = self._clock()
        return [entry.document(now) for entry in reversed(self._calls.values())]

    async def changed(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the next change; False on timeout or once closed."""
        if self.closed:
            return False
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return not self.closed

    def close(self) -> None:
        """The daemon stops: wake every live page so its stream ends."""
        self.closed = True
        self._notify()

    # -- internals ---------------------------------------------------------------------------

    def _entry(self, event: CtiEvent, now: float, dry: bool) -> CallEntry | None:
        cid = call_id(event)
        entry = self._calls.get(cid)
        if entry is not None or _text(event, "event") != "newCall":
            return entry
        entry = CallEntry(
            cid,
            _text(event, "direction"),
            _text(event, "from"),
            _text(event, "to"),
            started=now,
            dry_run=dry,
        )
        self._calls[cid] = entry
        while len(self._calls) > self.size:
            _, old = self._calls.popitem(last=False)
            for rid in old.waiting:
                self._by_id.pop(rid, None)
                self._newcall_ids.discard(rid)
        return entry

    @staticmethod
    def _apply(entry: CallEntry, event: CtiEvent, now: float) -> None:
        name = _text(event, "event")
        entry.state = name
        users = event.get("user[]")
        if isinstance(users, list) and users:
            entry.users = list(users)
        if _text(event, "queue"):
            entry.queue = _text(event, "queue")
        if name == "answer":
            entry.answered = now
            if _text(event, "user"):
                entry.users = [_text(event, "user")]
        elif name == "hangup":
            entry.ended = now
            entry.cause = _text(event, "cause")

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()


def _answer_text(answer: Answer) -> str:
    if answer.action == "reject":
        return "reject"
    if answer.action == "dial" and answer.caller_id:
        return f"caller ID {answer.caller_id}"
    return ""

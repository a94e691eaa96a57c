"""The caller log of recent calls: rows in Zammad's columns, delivery state, bounded, live."""

from __future__ import annotations

import asyncio

from cti_bridge.demo.zammad import call_events
from cti_bridge.events import CtiEvent
from cti_bridge.service.recent import DeliveryState, RecentCalls
from cti_bridge.zammad.answers import ZammadAnswer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def inbound(cid: str = "c1", caller: str = "491710000001") -> list[CtiEvent]:
    return [
        {"event": "newCall", "callId": cid, "direction": "in", "from": caller,
         "to": "4930555100", "user[]": ["Alice Agent", "Bob"], "queue": "helpdesk"},
        {"event": "answer", "callId": cid, "direction": "in", "from": caller,
         "to": "4930555100", "user": "Alice Agent", "answeringNumber": "101"},
        {"event": "hangup", "callId": cid, "direction": "in", "from": caller,
         "to": "4930555100", "cause": "normalClearing"},
    ]  # fmt: skip


def test_a_call_fills_zammads_columns_and_times() -> None:
    clock = Clock()
    recent = RecentCalls(clock=clock)
    new, ans, hang = inbound()
    recent.committed([1], [new])
    (row,) = recent.rows()
    assert (row["state"], row["users"], row["delivery"]) == (
        "newCall",
        ["Alice Agent", "Bob"],
        "waiting",
    )
    clock.now += 5
    recent.committed([2], [ans])
    clock.now += 20
    recent.committed([3], [hang])
    clock.now += 100  # times stop at the hangup
    (row,) = recent.rows()
    assert {k: row[k] for k in ("direction", "from", "to", "queue", "state", "cause")} == {
        "direction": "in",
        "from": "491710000001",
        "to": "4930555100",
        "queue": "helpdesk",
        "state": "hangup",
        "cause": "normalClearing",
    }
    assert (row["users"], row["waiting_s"], row["talking_s"]) == (["Alice Agent"], 5.0, 20.0)
    assert row["delivery"] == "waiting"
    for rid in (1, 2):
        recent.done(rid, ZammadAnswer("none"))
    assert recent.rows()[0]["delivery"] == "waiting"
    recent.done(3, ZammadAnswer("none"))
    assert recent.rows()[0]["delivery"] == DeliveryState.DELIVERED


def test_zammads_answer_to_the_newcall_is_shown() -> None:
    recent = RecentCalls()
    recent.committed([1, 2], call_events("in1")[:1] + call_events("out1", direction="out")[:1])
    recent.done(1, ZammadAnswer("reject"))
    recent.done(2, ZammadAnswer("dial", caller_id="4930555999"))
    answers = {r["call_id"]: r["zammad"] for r in recent.rows()}
    assert answers == {"in1": "reject", "out1": "caller ID 4930555999"}


def test_a_dead_event_marks_the_call_dead_and_dry_run_calls_say_so() -> None:
    recent = RecentCalls()
    recent.committed([1, 2], call_events("a")[:2])
    recent.done(1, ZammadAnswer("none"))
    recent.done(2, None)
    recent.committed([7], call_events("b")[:1], dry=True)
    recent.done(7, None)  # dry-run ids are not outbox ids: nothing to resolve
    by_id = {r["call_id"]: r["delivery"] for r in recent.rows()}
    assert by_id == {"a": "dead", "b": "dry run"}


def test_newest_first_and_bounded() -> None:
    recent = RecentCalls(size=3)
    for i in range(5):
        recent.committed([i + 1], call_events(f"c{i}")[:1])
    assert [r["call_id"] for r in recent.rows()] == ["c4", "c3", "c2"]
    recent.done(1, None)  # an evicted call's event: ignored
    assert all(r["delivery"] == "waiting" for r in recent.rows())


def test_events_of_a_call_never_seen_start_no_row() -> None:
    recent = RecentCalls()
    recent.committed([1], call_events("gone")[1:2])  # an answer without its newCall
    assert recent.rows() == []


async def test_changed_wakes_on_a_change_and_on_close() -> None:
    recent = RecentCalls()
    assert await recent.changed(0.01) is False
    waiter = asyncio.ensure_future(recent.changed(5))
    await asyncio.sleep(0)
    recent.committed([1], call_events("x")[:1])
    assert await waiter is True
    waiter = asyncio.ensure_future(recent.changed(5))
    await asyncio.sleep(0)
    recent.close()
    assert await waiter is False
    assert await recent.changed(5) is False

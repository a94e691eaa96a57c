"""Per-call lanes over a real outbox: order per call, a call ready at most once, paging by id."""

from __future__ import annotations

from pathlib import Path

from cti_bridge.demo.zammad import call_events
from cti_bridge.outbox.store import Outbox
from cti_bridge.zammad.acks import AckBatch
from cti_bridge.zammad.lanes import Lanes


async def drain(lanes: Lanes) -> list[tuple[str, str]]:
    """Pop heads in ready order, as the workers would, until nothing is ready."""
    sent: list[tuple[str, str]] = []
    while lanes.lanes:
        picked = await lanes.next_ready()
        assert picked is not None
        cid, lane = picked
        row = lane.rows.popleft()
        lanes.forget(row)
        sent.append((cid, row.name))
        lanes.reschedule(cid, lane)
    return sent


async def test_each_call_in_order_and_in_the_ready_queue_once(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as ob:
        lanes = Lanes(ob, AckBatch(ob), max_in_memory=100)
        events = [e for pair in zip(call_events("a"), call_events("b"), strict=True) for e in pair]
        ids = ob.put_many(events)
        lanes.committed(ids, events, 0.0)
        assert len(lanes) == 6
        sent = await drain(lanes)
    assert [n for c, n in sent if c == "a"] == ["newCall", "answer", "hangup"]
    assert [n for c, n in sent if c == "b"] == ["newCall", "answer", "hangup"]
    assert sent[:2] == [("a", "newCall"), ("b", "newCall")]  # calls take turns
    assert len(lanes) == 0


async def test_pages_in_from_disk_by_id_when_memory_is_full(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as ob:
        lanes = Lanes(ob, AckBatch(ob), max_in_memory=4)
        for cid in ("a", "b", "c"):
            events = call_events(cid)
            lanes.committed(ob.put_many(events), events, 0.0)
        assert len(lanes) == 4  # the rest waits on disk
        sent = await drain(lanes)
    assert len(sent) == 9
    for cid in ("a", "b", "c"):
        assert [n for c, n in sent if c == cid] == ["newCall", "answer", "hangup"]


async def test_hurry_puts_a_call_first(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as ob:
        lanes = Lanes(ob, AckBatch(ob), max_in_memory=100)
        for cid in ("a", "b", "c"):
            events = call_events(cid)[:1]
            lanes.committed(ob.put_many(events), events, 0.0)
        lanes.hurry("c")
        sent = await drain(lanes)
    assert [c for c, _ in sent] == ["c", "a", "b"]


async def test_a_dead_call_is_remembered_until_revived(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as ob:
        lanes = Lanes(ob, AckBatch(ob), max_in_memory=10)
        lanes.mark_dead("x")
        assert lanes.is_dead("x") and not lanes.is_dead("y")
        lanes.revive("x")
        assert not lanes.is_dead("x")
        assert [lanes.count_error_id(7) for _ in range(3)] == [1, 2, 3]

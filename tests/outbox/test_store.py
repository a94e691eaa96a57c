"""The durable outbox: unit behaviour, a second process, and crash-point properties."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from cti_bridge.demo.zammad import call_events
from cti_bridge.outbox.store import Outbox


def test_put_ack_and_order(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "deep" / "dir" / "o.sqlite3")  # parent dirs are created
    ids = ob.put_many(call_events("a") + call_events("b"))
    assert ids == sorted(ids) and len(ids) == 6
    rows = ob.pending(10)
    assert [r.id for r in rows] == ids
    assert [r.name for r in rows if r.call_id == "a"] == ["newCall", "answer", "hangup"]
    assert rows[0].event["user[]"] == ["Agent Smith"]  # lists survive the JSON round trip
    ob.ack(ids[0])
    ob.record_failure(ids[1], "HTTP 502")
    ob.record_failure(ids[1], "HTTP 503")
    r = ob.pending(1)[0]
    assert (r.id, r.attempts, r.last_error) == (ids[1], 2, "HTTP 503")
    assert ob.count() == 5
    assert ob.pending(2, after=ids[3]) == ob.pending(10)[3:5]
    ob.close()


def test_wal_mode_and_only_cti_fields(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as ob:
        ob.put(call_events("a")[0])
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    (stored,) = db.execute("SELECT event FROM pending").fetchone()
    assert set(json.loads(stored)) == {"event", "callId", "direction", "from", "to", "user[]"}
    db.close()


def test_oldest_age(tmp_path: Path) -> None:
    now = [1000.0]
    with Outbox(tmp_path / "o.sqlite3", clock=lambda: now[0]) as ob:
        assert ob.oldest_age() is None
        ob.put(call_events("a")[0])
        now[0] = 1010.0
        ob.put(call_events("b")[0])
        assert ob.oldest_age(1030.0) == 30.0
        assert ob.oldest_age() == 10.0


def test_dead_letter_retry_and_purge(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as ob:
        a = ob.put_many(call_events("a"))
        b = ob.put_many(call_events("b"))
        assert ob.dead_letter(call="a", reason="too old") == a
        assert ob.dead_letter(b[1], "Error ID") == [b[1]]
        dead = ob.list_dead()
        assert [d.id for d in dead] == [*a, b[1]]
        assert dead[0].reason == "too old" and dead[-1].reason == "Error ID"
        assert ob.count() == 2 and ob.count_dead() == 4
        # Retried rows go after everything queued, in their old order.
        assert ob.retry_dead([a[0], a[2], 999]) == 2
        names = [(r.call_id, r.name) for r in ob.pending()]
        assert names == [("b", "newCall"), ("b", "hangup"), ("a", "newCall"), ("a", "hangup")]
        assert ob.retry_dead() == 2
        assert ob.count_dead() == 0
        ob.dead_letter(call="b", reason="x")
        assert ob.purge(dead_only=True) == 3
        assert ob.count() == 3 and ob.count_dead() == 0
        assert ob.purge(dead_only=False) == 3
        assert ob.count() == 0


def test_second_process_reads_and_writes_while_open(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    ob = Outbox(path)
    ob.put_many(call_events("a"))
    ob.dead_letter(call="a", reason="r")
    ob.put(call_events("b")[0])
    script = (
        "import sys; from cti_bridge.outbox.store import Outbox\n"
        "ob = Outbox(sys.argv[1]); print(ob.count(), ob.count_dead(), ob.retry_dead())\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=True,
    )
    assert out.stdout.split() == ["1", "3", "3"]
    assert [r.call_id for r in ob.pending()] == ["b", "a", "a", "a"]
    ob.close()


def test_torn_transaction_leaves_nothing(tmp_path: Path) -> None:
    """A process killed inside a transaction: its rows never appear, the file stays usable."""
    path = tmp_path / "o.sqlite3"
    Outbox(path).close()
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")
    raw.execute("INSERT INTO pending (call_id, event, created_at) VALUES ('x', '{}', 0)")
    raw.close()  # no COMMIT: what the kernel does to a killed process's transaction
    with Outbox(path) as ob:
        assert ob.count() == 0
        ob.put(call_events("y")[0])
        assert ob.count() == 1


# -- crash-point property ----------------------------------------------------------------------


class OutboxCrashes(RuleBasedStateMachine):
    """Random interleavings of enqueue, send, acknowledge and crash (abandon + reopen).

    The sender follows the delivery rule: only the oldest pending event of a call may be sent.
    A crash forgets everything in memory (the events sent but not yet acknowledged included).
    Invariants: no event is ever lost, the server never sees a call out of order, and the only
    repeats are the in-flight event re-sent after a crash.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "outbox" / "o.sqlite3"
        self.ob = Outbox(self.path)
        self.abandoned: list[Outbox] = []
        self.puts: dict[str, list[int]] = {}  # call -> seq numbers committed, in order
        self.server: dict[str, list[int]] = {}  # call -> seq numbers received, in order
        self.in_flight: dict[str, tuple[int, int]] = {}  # call -> (row id, seq)
        self.dead: set[str] = set()

    @initialize()
    def start(self) -> None:
        pass

    def _event(self, call: str) -> dict[str, Any]:
        seq = len(self.puts.setdefault(call, []))
        return {"event": "answer", "callId": call, "direction": "in", "seq": str(seq)}

    @rule(calls=st.lists(st.sampled_from("abcd"), min_size=1, max_size=4))
    def enqueue(self, calls: list[str]) -> None:
        events = []
        for c in calls:
            ev = self._event(c)
            self.puts[c].append(int(ev["seq"]))  # committed before put_many returns
            events.append(ev)
        self.ob.put_many(events)

    @rule(pick=st.integers(0, 3))
    def send(self, pick: int) -> None:
        heads: dict[str, Any] = {}
        for row in self.ob.pending(10_000):
            heads.setdefault(row.call_id, row)
        ready = sorted(c for c in heads if c not in self.in_flight)
        if not ready:
            return
        call = ready[pick % len(ready)]
        row = heads[call]
        seq = int(row.event["seq"])
        self.server.setdefault(call, []).append(seq)
        self.in_flight[call] = (row.id, seq)

    @precondition(lambda self: bool(self.in_flight))
    @rule(pick=st.integers(0, 3), fail=st.booleans())
    def acknowledge(self, pick: int, fail: bool) -> None:
        call = sorted(self.in_flight)[pick % len(self.in_flight)]
        row_id, _ = self.in_flight.pop(call)
        if fail:  # the post failed: the event stays, and nothing reached the server
            self.ob.record_failure(row_id, "HTTP 503")
            self.server[call].pop()
        else:
            self.ob.ack(row_id)

    @rule(close=st.booleans())
    def crash(self, close: bool) -> None:
        if close:
            self.ob.close()
        else:
            self.abandoned.append(self.ob)  # kill -9: no close, nothing flushed by us
        self.in_flight.clear()
        self.ob = Outbox(self.path)

    @rule(call=st.sampled_from("abcd"))
    def dead_letter_and_retry(self, call: str) -> None:
        if call in self.in_flight:
            return
        self.ob.dead_letter(call=call, reason="test")
        self.ob.retry_dead()

    @invariant()
    def nothing_lost_nothing_reordered(self) -> None:
        pending: dict[str, list[int]] = {}
        for row in self.ob.pending(10_000):
            pending.setdefault(row.call_id, []).append(int(row.event["seq"]))
        for call, puts in self.puts.items():
            got = _collapse(self.server.get(call, []))
            # What the server has, then what is still pending, is exactly what was put.
            p = pending.get(call, [])
            if call in self.in_flight:
                assert got[-1] == p[0]
            if got and p and got[-1] == p[0]:  # sent, not yet (or never, after a crash) acked
                got = got[:-1]
            assert got + p == puts, (call, got, p, puts)

    def teardown(self) -> None:
        # Drain: everything left is delivered, and the final log per call is the put order.
        self.in_flight.clear()
        for row in self.ob.pending(10_000):
            self.server.setdefault(row.call_id, []).append(int(row.event["seq"]))
            self.ob.ack(row.id)
        for call, puts in self.puts.items():
            assert _collapse(self.server.get(call, [])) == puts
        self.ob.close()
        for ob in self.abandoned:
            ob.close()
        self.dir.cleanup()


def _collapse(seqs: list[int]) -> list[int]:
    """Drop immediate repeats (a re-send after a crash between send and acknowledge)."""
    out: list[int] = []
    for s in seqs:
        if not out or out[-1] != s:
            out.append(s)
    return out


OutboxCrashes.TestCase.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
TestOutboxCrashes = OutboxCrashes.TestCase


def test_put_many_is_one_transaction(tmp_path: Path) -> None:
    """A batch is all or nothing: an event that cannot be stored rolls back the whole batch."""
    with Outbox(tmp_path / "o.sqlite3") as ob:
        good = call_events("c")[0]
        bad: dict[str, Any] = {"event": "newCall", "callId": "d", "x": object()}
        with contextlib.suppress(TypeError):
            ob.put_many([good, bad])
        assert ob.count() == 0
        assert len(ob.put_many([good] * 1000)) == 1000


def test_background_checkpoint(tmp_path: Path) -> None:
    """With autocheckpoint off, checkpoint() from another thread moves the WAL into the file."""
    import threading

    path = tmp_path / "o.sqlite3"
    ob = Outbox(path, background_checkpoint=True)
    ids = ob.put_many([call_events(f"c{i}")[0] for i in range(3000)])
    wal = Path(str(path) + "-wal")
    assert wal.stat().st_size > 0
    t = threading.Thread(target=ob.checkpoint)
    t.start()
    t.join(10)
    probe = sqlite3.connect(path)
    busy, frames, done = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    probe.close()
    assert busy == 0 and frames == done  # nothing left to copy
    for i in ids[:10]:
        ob.ack(i)
    ob.close()
    with Outbox(path) as again:
        assert again.count() == 2990


def test_open_calls_follow_the_events_put(tmp_path: Path) -> None:
    """newCall opens, answer marks answered, hangup closes: in the same transaction."""
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path)
    base = {"direction": "in", "from": "1", "to": "2"}
    box.put_many(
        [{**base, "event": "newCall", "callId": "a"}, {**base, "event": "newCall", "callId": "b"}]
    )
    box.put({**base, "event": "answer", "callId": "a"})
    box.put({**base, "event": "hangup", "callId": "b"})
    box.close()
    box = Outbox(path)  # survives a restart
    ((event, answered),) = box.open_calls()
    assert event["callId"] == "a" and event["event"] == "newCall" and answered is True
    box.purge(dead_only=False)
    assert box.open_calls() == []
    box.close()

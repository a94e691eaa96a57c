"""Nothing ticks when idle: the tracker names its next deadline, the daemon arms one timer at it.

Deterministic (no timing): the deadlines are computed from the tracker's state, and the
daemon's timer is inspected, not waited for.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from cti_bridge.calls.tracker import CallTracker
from cti_bridge.config import parse_config
from cti_bridge.outbox.store import Outbox
from cti_bridge.service.daemon import Daemon
from tests.calls.test_tracker import RULES, hangup, names, trunk_in
from tests.service.test_daemon import make_config
from tests.support.fake_ami import FakeAmi

LIMIT = 60.0
RULES_60 = replace(RULES, max_call_duration=LIMIT)


def test_no_deadline_without_calls() -> None:
    tracker = CallTracker(RULES_60)
    assert tracker.next_deadline() is None
    tracker.tick(100.0)
    assert tracker.next_deadline() is None


def test_deadline_follows_pending_newcall_then_silence_then_nothing() -> None:
    tracker = CallTracker(RULES_60)
    tracker.tick(100.0)
    tracker.feed(trunk_in("1.0"))  # inbound newCall held for newcall_delay
    assert tracker.next_deadline() == 100.0 + RULES_60.newcall_delay
    out = tracker.tick(100.0 + RULES_60.newcall_delay)
    assert names(out) == ["newCall"]
    # Released: what is left is the silent-call expiry, counted from the last event.
    assert tracker.next_deadline() == 100.0 + LIMIT
    tracker.tick(130.0)
    assert tracker.next_deadline() == 100.0 + LIMIT  # a tick is not an event of the call
    assert names(tracker.feed(hangup("1.0"))) == ["hangup"]
    assert tracker.next_deadline() is None


def test_deadline_is_the_earliest_of_several_calls() -> None:
    now = [10.0]
    tracker = CallTracker(RULES_60, clock=lambda: now[0])
    tracker.feed(trunk_in("1.0"))
    now[0] = 20.0
    tracker.feed(trunk_in("2.0", caller="491710000002"))
    assert tracker.next_deadline() == 10.0 + RULES_60.newcall_delay
    tracker.tick(10.0 + RULES_60.newcall_delay)  # releases the first call only
    assert tracker.next_deadline() == 20.0 + RULES_60.newcall_delay
    tracker.tick(20.0 + RULES_60.newcall_delay)
    assert tracker.next_deadline() == 10.0 + LIMIT  # the first call went silent first


def test_live_clock_stamps_calls_without_ticks() -> None:
    now = [5000.0]
    tracker = CallTracker(RULES_60, clock=lambda: now[0])
    tracker.feed(trunk_in("1.0"))
    assert tracker.calls["1.0"].last_seen == 5000.0
    assert tracker.calls["1.0"].armed_at == 5000.0


def test_unstamped_call_is_due_at_once() -> None:
    tracker = CallTracker(RULES_60)  # a replay: time 0 until the first tick
    tracker.feed(trunk_in("1.0"))
    tracker.flush()
    assert tracker.next_deadline() == 0.0
    tracker.tick(700.0)  # stamps it
    assert tracker.next_deadline() == 700.0 + LIMIT


async def test_daemon_arms_one_timer_only_while_calls_are_open(tmp_path: Path) -> None:
    async with FakeAmi() as ami:
        cfg = parse_config(make_config(tmp_path, ami, "http://127.0.0.1:9/api/v1/cti/x"))
        daemon = Daemon(cfg)
        try:
            daemon._rearm()
            assert daemon._tick_timer is None  # idle: nothing scheduled
            daemon._on_ami_event(trunk_in("1.0", Context="from-pstn"))
            await asyncio.sleep(0)  # the re-arm runs once per AMI read, in the same pass
            timer = daemon._tick_timer
            assert timer is not None
            assert timer.when() == daemon.tracker.next_deadline()
            daemon._on_ami_event(hangup("1.0"))
            await asyncio.sleep(0)
            assert daemon._tick_timer is None and timer.cancelled()
        finally:
            daemon.staged.clear()
            daemon.outbox.close()
            await daemon.routes.aclose()


def test_outbox_reports_commits_not_reads(tmp_path: Path) -> None:
    commits: list[int] = []
    with Outbox(tmp_path / "o.sqlite3") as box:
        box.on_commit = lambda: commits.append(1)
        box.count()
        box.pending(10)
        assert commits == []  # a checkpoint task waiting for writes stays asleep
        (rid,) = box.put_many([{"event": "newCall", "callId": "c"}])
        box.ack_many([rid])
        assert len(commits) == 2

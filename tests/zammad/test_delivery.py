"""Delivery against the real fake Zammad on loopback: nothing lost, each call in order, once."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cti_bridge.config import Secret, ZammadConfig
from cti_bridge.demo.zammad import FakeZammad, call_events
from cti_bridge.outbox.store import Outbox
from cti_bridge.zammad import Delivery, ZammadClient
from cti_bridge.zammad.answers import interpret

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "S3cr3t-T0ken-xyz"


def zcfg(url: str, **kw: Any) -> ZammadConfig:
    opts: dict[str, Any] = {
        "timeout": 0.3,
        "max_backoff": 0.1,
        "config_retry_interval": 0.2,
        "concurrency": 4,
    }
    opts.update(kw)
    return ZammadConfig(url=Secret(url), **opts)


@pytest.fixture
def fake() -> Iterator[FakeZammad]:
    with FakeZammad(TOKEN, blocked=("4930666",), default_caller_id="4930777000") as f:
        yield f


@dataclass
class Rig:
    fake: FakeZammad
    outbox: Outbox
    client: ZammadClient
    delivery: Delivery
    observed: list[tuple[str, str, float]] = field(default_factory=list)


async def make_rig(
    fake: FakeZammad, path: Path, url: str | None = None, **kw: Any
) -> AsyncIterator[Rig]:
    dkw = {k: kw.pop(k) for k in ("clock", "max_in_memory", "error_id_retries") if k in kw}
    cfg = zcfg(url or fake.url(), **kw)
    outbox = Outbox(path, clock=dkw.get("clock", time.time))
    client = ZammadClient(cfg)
    rig = Rig(fake, outbox, client, None)  # type: ignore[arg-type]
    rig.delivery = Delivery(
        outbox,
        client,
        cfg,
        observer=lambda *a: rig.observed.append(a),
        housekeeping_interval=0.05,
        **dkw,
    )
    await rig.delivery.start()
    try:
        yield rig
    finally:
        await rig.delivery.stop(grace=1.0)
        await client.aclose()
        outbox.close()


@pytest.fixture
async def rig(fake: FakeZammad, tmp_path: Path) -> AsyncIterator[Rig]:
    async for r in make_rig(fake, tmp_path / "outbox" / "outbox.sqlite3"):
        yield r


def calls(n: int, prefix: str = "c") -> list[list[dict[str, Any]]]:
    return [call_events(f"{prefix}{i}", answered=i % 3 != 0) for i in range(n)]


def interleaved(per_call: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Round-robin the calls' events, as overlapping calls arrive from the PBX."""
    out: list[dict[str, Any]] = []
    for step in range(3):
        out += [evs[step] for evs in per_call if step < len(evs)]
    return out


def total(per_call: list[list[dict[str, Any]]]) -> int:
    return sum(len(c) for c in per_call)


def expected(per_call: list[list[dict[str, Any]]]) -> dict[str, list[str]]:
    return {evs[0]["callId"]: [e["event"] for e in evs] for evs in per_call}


def stored_exactly(fake: FakeZammad, want: dict[str, list[str]]) -> bool:
    return all(fake.stored(cid) == names for cid, names in want.items())


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def drained(rig: Rig, want: dict[str, list[str]], timeout: float = 15.0) -> None:
    ok = await rig.fake.async_wait_for(lambda f: stored_exactly(f, want), timeout)
    got = {cid: rig.fake.stored(cid) for cid in want if rig.fake.stored(cid) != want[cid]}
    assert ok, f"not delivered as expected: {dict(list(got.items())[:5])}"
    # Zammad stored each event once and in order; the outbox let go of all of them.
    assert await until(lambda: rig.outbox.count() == 0)


def post_count(fake: FakeZammad) -> int:
    return sum(1 for r in fake.requests if r.fault != "dropped")


async def test_healthy_calls_are_delivered_in_order(rig: Rig) -> None:
    per_call = calls(30)
    rig.delivery.submit_many(interleaved(per_call))
    await drained(rig, expected(per_call))
    total = sum(len(c) for c in per_call)
    assert post_count(rig.fake) == total  # nothing sent twice
    st = rig.delivery.status()
    assert st["state"] == "ok" and st["posted"] == total and st["pending"] == 0
    assert st["dead"] == 0 and st["in_flight"] == 0 and st["oldest_age_s"] is None
    assert {r for _, r, _ in rig.observed} == {"ok"}
    # user[] went out as a repeated form field, not as a JSON list.
    first = rig.fake.requests[0]
    assert first.getall("user[]") == ["Agent Smith"]


async def test_zammad_down_then_up(rig: Rig) -> None:
    rig.fake.down()
    per_call = calls(10)
    rig.delivery.submit_many(interleaved(per_call))
    for _ in range(200):
        if rig.delivery.status()["retries"] >= 3:
            break
        await asyncio.sleep(0.01)
    st = rig.delivery.status()
    assert st["state"] == "down" and st["retries"] >= 3
    assert st["pending"] == total(per_call) and st["oldest_age_s"] is not None
    assert "cannot connect" in (st["last_error"] or "")
    rig.fake.up()
    await drained(rig, expected(per_call))
    assert post_count(rig.fake) == total(per_call)
    assert rig.delivery.status()["state"] == "ok"


@pytest.mark.parametrize("status", [500, 502])
async def test_html_error_pages_are_retried(rig: Rig, status: int) -> None:
    rig.fake.fail(status, times=7)
    per_call = calls(6)
    rig.delivery.submit_many(interleaved(per_call))
    await drained(rig, expected(per_call))
    assert sum(1 for r in rig.fake.requests if r.fault == "fail") == 7
    assert rig.delivery.status()["dead"] == 0


async def test_unreadable_200_counts_as_delivered(rig: Rig) -> None:
    rig.fake.garbage(times=2)
    rig.fake.json_array(times=2)
    rig.fake.huge(size=3 * 1024 * 1024, times=1)
    per_call = calls(4)
    rig.delivery.submit_many(interleaved(per_call))
    await drained(rig, expected(per_call))
    assert post_count(rig.fake) == total(per_call)  # not one of them was repeated


async def test_server_slower_than_timeout(rig: Rig) -> None:
    # The fake drops a held request whose client has gone (see its docstring): each retry
    # after a timeout is then safe, and Zammad must end up with every event exactly once.
    rig.fake.delay(0.6, times=4)
    per_call = calls(5)
    rig.delivery.submit_many(interleaved(per_call))
    await drained(rig, expected(per_call))
    # Every held request ends up dropped (its client timed out) and nothing changes after.
    assert await until(lambda: sum(r.fault == "dropped" for r in rig.fake.requests) == 4)
    assert stored_exactly(rig.fake, expected(per_call))
    assert rig.delivery.status()["retries"] >= 4


async def test_wrong_token_keeps_events_until_fixed(fake: FakeZammad, tmp_path: Path) -> None:
    async for rig in make_rig(fake, tmp_path / "o.sqlite3", url=fake.url("0ld-T0ken")):
        per_call = calls(5)
        rig.delivery.submit_many(interleaved(per_call))
        d = rig.delivery
        assert await until(lambda d=d: d.state == "rejected")
        st = rig.delivery.status()
        assert st["pending"] == total(per_call)
        assert "401" in (st["last_error"] or "")
        assert fake.stored_count() == 0
        # While rejected the bridge probes slowly, one request at a time: no flood.
        await asyncio.sleep(0.1)  # let the first concurrent burst (one post per worker) land
        before = len(fake.requests)
        await asyncio.sleep(0.5)
        assert len(fake.requests) - before <= 4  # config_retry_interval is 0.2 s
        fake.token = "0ld-T0ken"  # the admin fixes it on Zammad's side
        await drained(rig, expected(per_call))
        assert rig.delivery.status()["state"] == "ok"


async def test_disabled_integration_is_a_config_state(rig: Rig) -> None:
    rig.fake.enabled = False
    rig.delivery.submit_many(call_events("d1"))
    await rig.fake.async_wait_for(lambda f: len(f.requests) >= 1, 5)
    await asyncio.sleep(0.05)
    assert rig.delivery.status()["state"] == "rejected"
    rig.fake.enabled = True
    await drained(rig, {"d1": ["newCall", "answer", "hangup"]})


async def test_redirect_is_not_followed(fake: FakeZammad, rig: Rig) -> None:
    with FakeZammad(TOKEN) as elsewhere:
        fake.redirect(elsewhere.url(), times=2)
        rig.delivery.submit_many(call_events("r1"))
        await fake.async_wait_for(lambda f: len(f.requests) >= 1, 5)
        await asyncio.sleep(0.05)
        st = rig.delivery.status()
        assert st["state"] == "rejected" and "redirect" in (st["last_error"] or "")
        await drained(rig, {"r1": ["newCall", "answer", "hangup"]})
        assert elsewhere.requests == []
        assert TOKEN not in (st["last_error"] or "")


async def test_reject_and_dial_answers(rig: Rig) -> None:
    d = rig.delivery
    blocked = call_events("rej", frm="4930666")
    answer = await d.submit_and_wait(blocked[0], timeout=2)
    assert answer is not None and answer.action == "reject" and answer.reason == "busy"
    d.submit(blocked[2])  # a rejected call still gets its hangup
    out = call_events("dial", direction="out", frm="100", to="4912347114711")
    answer = await d.submit_and_wait(out[0], timeout=2)
    assert answer is not None and answer.action == "dial"
    assert answer.caller_id == "4930777000" and answer.number == "4912347114711"
    rig.fake.default_caller_id = '123\n"; EXEC System(rm -rf /)'
    hostile = call_events("evil", direction="out", frm="100", to="4912347114711")
    answer = await d.submit_and_wait(hostile[0], timeout=2)
    assert answer is not None and answer.action == "none" and answer.caller_id is None
    plain = call_events("plain")
    answer = await d.submit_and_wait(plain[0], timeout=2)
    assert answer is not None and answer.action == "none"
    d.submit_many(out[1:] + hostile[1:] + plain[1:])
    await drained(
        rig,
        {
            "rej": ["newCall", "hangup"],
            "dial": ["newCall", "answer", "hangup"],
            "evil": ["newCall", "answer", "hangup"],
            "plain": ["newCall", "answer", "hangup"],
        },
    )
    assert rig.fake.calls()["dial"].from_ == "4930777000"  # Zammad rewrote the caller id


async def test_submit_and_wait_jumps_the_backlog(rig: Rig) -> None:
    rig.fake.down()
    backlog = calls(40, prefix="b")
    rig.delivery.submit_many(interleaved(backlog))
    assert await rig.delivery.submit_and_wait(call_events("x")[0], timeout=0.2) is None
    rig.fake.up()
    await drained(rig, expected(backlog) | {"x": ["newCall"]})
    urgent = call_events("u1")
    answer = await rig.delivery.submit_and_wait(urgent[0], timeout=2)
    assert answer is not None
    # While healthy with a backlog, the AGI newCall goes first. (No server delay here: a
    # delayed u2 would be recorded after posts that other workers sent meanwhile.)
    more = calls(40, prefix="m")
    rig.delivery.submit_many(interleaved(more))
    urgent2 = call_events("u2")[0]
    answer = await rig.delivery.submit_and_wait(urgent2, timeout=2)
    assert answer is not None
    await drained(rig, expected(more))
    order = [r.get("callId") for r in rig.fake.requests if r.fault != "dropped"]
    assert order.index("u2") < order.index("m39")


async def test_submit_and_wait_times_out_but_keeps_event(rig: Rig) -> None:
    rig.fake.delay(0.25, times=1)  # slower than the wait, faster than the client timeout
    ev = call_events("slow")[0]
    assert await rig.delivery.submit_and_wait(ev, timeout=0.05) is None
    await drained(rig, {"slow": ["newCall"]})


async def test_answer_watches_fire_once_in_time_and_never_late(rig: Rig) -> None:
    seen: list[tuple[str, str]] = []
    d = rig.delivery
    (in_time,) = d.submit_many([call_events("w1", frm="4930666")[0]])
    d.watch_answer(in_time, lambda a: seen.append(("w1", a.action)), timeout=2.0)
    await drained(rig, {"w1": ["newCall"]})
    assert seen == [("w1", "reject")]
    rig.fake.delay(0.3, times=1)
    (late,) = d.submit_many([call_events("w2", frm="4930666")[0]])
    d.watch_answer(late, lambda a: seen.append(("w2", a.action)), timeout=0.1)
    await drained(rig, {"w1": ["newCall"], "w2": ["newCall"]})
    assert seen == [("w1", "reject")]  # answered after its watch expired: not applied
    d.watch_answer(late, lambda a: seen.append(("gone", a.action)), timeout=2.0)
    # Already delivered: nothing to watch, and the late one was pruned.
    assert not d._answers.watching


async def test_duplicate_newcall_counts_as_delivered(rig: Rig) -> None:
    events = call_events("dup")
    # An earlier try was stored but its answer was lost (e.g. kill -9 before the ack).
    async with ZammadClient(zcfg(rig.fake.url())) as c:
        await c.post(events[0])
    rig.delivery.submit_many(events)
    await drained(rig, {"dup": ["newCall", "answer", "hangup"]})
    assert ("newCall", "duplicate") in [(n, r) for n, r, _ in rig.observed]


async def test_answer_for_unknown_call_is_dead_lettered(
    fake: FakeZammad, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async for rig in make_rig(fake, tmp_path / "o.sqlite3", error_id_retries=3):
        orphan = call_events("ghost")[1:]  # its newCall never existed
        rig.delivery.submit_many(orphan)
        ok_call = call_events("fine")
        rig.delivery.submit_many(ok_call)
        await drained(rig, {"fine": ["newCall", "answer", "hangup"]})
        dead = rig.outbox.list_dead()
        assert [d.name for d in dead] == ["answer", "hangup"]
        assert all("no such call" in d.reason for d in dead)
        assert rig.delivery.status()["dead"] == 2
        ghost_posts = [r for r in fake.requests if r.get("callId") == "ghost"]
        assert len(ghost_posts) == 6  # 3 bounded tries each
        assert "DEAD-LETTERED" in caplog.text


async def test_answer_500_from_zammad_is_not_repeated(rig: Rig) -> None:
    events = call_events("once")
    rig.delivery.submit(events[0])
    await drained(rig, {"once": ["newCall"]})
    # A Zammad JSON 500 on answer means it ran the request: repeating could reset timing.
    rig.fake.keep_bodies = True
    orig = rig.fake._zammad

    def broken(path: str, fields: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
        status, doc = orig(path, fields)
        if dict(fields).get("event") == "answer":
            return 500, {"error": "undefined method `downcase' for Array"}
        return status, doc

    rig.fake._zammad = broken  # type: ignore[method-assign]
    rig.delivery.submit_many(events[1:])
    await rig.fake.async_wait_for(lambda f: f.stored("once")[-1:] == ["hangup"], 5)
    answers = [r for r in rig.fake.requests if r.get("event") == "answer"]
    assert len(answers) == 1
    assert [d.name for d in rig.outbox.list_dead()] == ["answer"]


async def test_bad_event_does_not_stall_other_calls(rig: Rig) -> None:
    bad = {"event": "newCall", "direction": "sideways", "callId": "bad", "from": "1", "to": "2"}
    rig.delivery.submit(bad)
    per_call = calls(5)
    rig.delivery.submit_many(interleaved(per_call))
    ok = await rig.fake.async_wait_for(lambda f: stored_exactly(f, expected(per_call)), 10)
    assert ok
    assert await until(lambda: rig.outbox.count() == 1)
    assert rig.delivery.status()["state"] == "ok"
    assert rig.outbox.pending()[0].call_id == "bad"


async def test_old_events_are_dead_lettered_with_their_call(
    fake: FakeZammad, tmp_path: Path
) -> None:
    now = [time.time()]
    async for rig in make_rig(fake, tmp_path / "o.sqlite3", clock=lambda: now[0], max_age=60):
        fake.down()
        old = call_events("old")
        rig.delivery.submit_many(old[:2])
        await asyncio.sleep(0.1)
        now[0] += 3600
        rig.delivery.submit(old[2])  # arrives after its newCall was dead-lettered
        fresh = call_events("fresh")
        rig.delivery.submit_many(fresh)
        ok = False
        for _ in range(300):
            if rig.outbox.count_dead() == 3:
                ok = True
                break
            await asyncio.sleep(0.01)
        assert ok, rig.outbox.list_dead()
        fake.up()
        await drained(rig, {"fresh": ["newCall", "answer", "hangup"], "old": []})
        assert {d.call_id for d in rig.outbox.list_dead()} == {"old"}
        # `cti-bridge outbox retry` from another process: the daemon picks the rows up again.
        other = Outbox(rig.outbox.path, clock=lambda: now[0])
        assert other.retry_dead() == 3
        other.close()
        await drained(rig, {"old": ["newCall", "answer", "hangup"]})


async def test_memory_cap_pages_backlog_in_order(fake: FakeZammad, tmp_path: Path) -> None:
    async for rig in make_rig(fake, tmp_path / "o.sqlite3", max_in_memory=7):
        fake.down()
        per_call = calls(20)
        for ev in interleaved(per_call):
            rig.delivery.submit(ev)
        fake.up()
        await drained(rig, expected(per_call))
        assert post_count(fake) == sum(len(c) for c in per_call)


async def test_stop_leaves_the_rest_and_restart_drains(fake: FakeZammad, tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    fake.down()
    per_call = calls(8)
    async for rig in make_rig(fake, path):
        rig.delivery.submit_many(interleaved(per_call))
        await asyncio.sleep(0.05)
    with Outbox(path) as ob:
        assert ob.count() == sum(len(c) for c in per_call)
    fake.up()
    async for rig in make_rig(fake, path):
        await drained(rig, expected(per_call))


async def test_token_never_leaks(
    fake: FakeZammad, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Sup3r-S3cret-T0k"
    async for rig in make_rig(fake, tmp_path / "o.sqlite3", url=fake.url(secret)):
        rig.delivery.submit_many(call_events("leak"))
        await fake.async_wait_for(lambda f: len(f.requests) >= 1, 5)
        fake.redirect(f"http://127.0.0.1:1/api/v1/cti/{secret}?x={secret}")
        await fake.async_wait_for(lambda f: len(f.requests) >= 2, 5)
        fake.down()
        await asyncio.sleep(0.3)
        st = rig.delivery.status()
        assert "***" in st["url"]
        texts = [caplog.text, repr(st), *(r.last_error or "" for r in rig.outbox.pending())]
        with rig.outbox._db:  # the outbox holds only CTI fields
            texts += [str(r) for r in rig.outbox._db.execute("SELECT * FROM pending")]
        for text in texts:
            assert secret not in text
        assert "redirect" in caplog.text or "401" in caplog.text


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from cti_bridge.config import Secret, ZammadConfig
    from cti_bridge.outbox.store import Outbox
    from cti_bridge.zammad import Delivery, ZammadClient
    from cti_bridge.demo.zammad import call_events

    async def main(path, url, n):
        cfg = ZammadConfig(url=Secret(url), timeout=0.3, max_backoff=0.1)
        outbox = Outbox(path, background_checkpoint=True)
        d = Delivery(outbox, ZammadClient(cfg), cfg)
        await d.start()
        for i in range(n):
            d.submit_many(call_events(f"k{i}", answered=i % 2 == 0))
        print("queued", flush=True)
        while n or outbox.count():  # n == 0: drain, then exit
            await asyncio.sleep(0.02)
        await d.stop()
        print("drained", flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


def child(path: Path, url: str, n: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), url, str(n)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def read_line(proc: subprocess.Popen[bytes], timeout: float = 20) -> bytes:
    assert proc.stdout is not None
    return (await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout)).strip()


async def test_kill_9_during_outage_then_restart(fake: FakeZammad, tmp_path: Path) -> None:
    path = tmp_path / "outbox" / "o.sqlite3"
    fake.down()
    procs = [child(path, fake.url(), 25)]
    try:
        assert await read_line(procs[0]) == b"queued"
        await asyncio.sleep(0.2)  # let it fail a few retries
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait(5)
        fake.up()
        procs.append(child(path, fake.url(), 0))  # a new process drains what the dead one left
        assert await read_line(procs[1]) == b"queued"
        assert await read_line(procs[1]) == b"drained"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(5)
    want = {
        f"k{i}": (["newCall", "answer", "hangup"] if i % 2 == 0 else ["newCall", "hangup"])
        for i in range(25)
    }
    assert stored_exactly(fake, want)
    assert post_count(fake) == sum(len(v) for v in want.values())
    with Outbox(path) as ob:
        assert ob.count() == 0 and ob.count_dead() == 0


# -- property: random faults and restarts never lose, repeat or reorder an event ---------------


class ScriptedZammad:
    """Zammad's logic (the fake's, without HTTP) behind scripted transport faults.

    Faults happen before Zammad processes the request, as with a refused connection, a 502 from
    a proxy, or a timeout that the proxy turned into a dropped request; a post cancelled by a
    restart is likewise cancelled before processing. Then exactly-once is the expected outcome.
    """

    def __init__(self, faults: list[str]) -> None:
        self.fake = FakeZammad(TOKEN)
        self.faults = faults
        self.posts = 0
        self.active: set[str] = set()
        self.errors: list[str] = []

    async def post(self, event: dict[str, Any]) -> Any:
        from urllib.parse import urlencode

        from cti_bridge.events import form_items
        from cti_bridge.zammad import ZammadUnavailable

        cid = str(event["callId"])
        if cid in self.active:
            self.errors.append(f"two posts of call {cid} at once")
        self.active.add(cid)
        try:
            fault = self.faults[self.posts] if self.posts < len(self.faults) else "ok"
            self.posts += 1
            await asyncio.sleep(0)  # a restart may cancel the post here, before Zammad saw it
            if fault == "refused":
                raise ZammadUnavailable("cannot connect", maybe_processed=False)
            if fault == "502":
                raise ZammadUnavailable("HTTP 502", status_code=502)
            if fault == "timeout":
                raise ZammadUnavailable("timeout")
            fields = parse_qsl(urlencode(form_items(event)), keep_blank_values=True)
            status, doc = self.fake._zammad("/api/v1/cti/" + TOKEN, fields)
            if status != 200 and "already exists" not in json.dumps(doc):
                self.errors.append(f"{event['event']} of {cid}: {status} {doc}")
            return interpret(status, None, json.dumps(doc).encode())
        finally:
            self.active.discard(cid)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_calls=st.integers(1, 6),
    faults=st.lists(st.sampled_from(["ok", "ok", "refused", "502", "timeout"]), max_size=12),
    restarts=st.lists(st.integers(1, 25), max_size=3),
    chunks=st.integers(1, 5),
    concurrency=st.integers(1, 4),
)
def test_random_faults_and_restarts(
    n_calls: int, faults: list[str], restarts: list[int], chunks: int, concurrency: int
) -> None:
    asyncio.run(_scenario(n_calls, faults, sorted(set(restarts)), chunks, concurrency))


async def _scenario(
    n_calls: int, faults: list[str], restarts: list[int], chunks: int, concurrency: int
) -> None:
    zammad = ScriptedZammad(faults)
    # Never connected to (the scripted Zammad answers); the fake's unstarted url() has port 0,
    # which the config refuses.
    cfg = zcfg("http://127.0.0.1:9/api/v1/cti/" + TOKEN, max_backoff=0.001, concurrency=concurrency)
    per_call = calls(n_calls)
    events = interleaved(per_call)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "o.sqlite3"

        def new() -> Delivery:
            return Delivery(Outbox(path), zammad, cfg, housekeeping_interval=0.01)  # type: ignore[arg-type]

        d = new()
        await d.start()
        step = max(1, len(events) // chunks)
        for k in range(0, len(events), step):
            d.submit_many(events[k : k + step])
            await asyncio.sleep(0)
        deadline = time.monotonic() + 10
        want = expected(per_call)
        while not stored_exactly(zammad.fake, want) and time.monotonic() < deadline:
            if restarts and zammad.posts >= restarts[0]:
                restarts.pop(0)
                await d.stop(grace=0)  # like kill -9: posts in flight are cut off
                d._outbox.close()
                d = new()
                await d.start()
            await asyncio.sleep(0.001)
        await d.stop(grace=0)
        d._outbox.close()
    assert zammad.errors == []
    assert {c: zammad.fake.stored(c) for c in want} == want


async def test_unexpected_exception_does_not_kill_the_sender(
    fake: FakeZammad, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Flaky(ZammadClient):
        boom = 2

        async def post(self, event: dict[str, Any]) -> Any:
            if self.boom:
                self.boom -= 1
                raise RuntimeError("bug")
            return await super().post(event)

    cfg = zcfg(fake.url(), concurrency=1)
    with Outbox(tmp_path / "o.sqlite3") as ob:
        client = Flaky(cfg)
        d = Delivery(ob, client, cfg)
        await d.start()
        d.submit_many(call_events("f"))
        ok = await fake.async_wait_for(lambda f: f.stored("f") == ["newCall", "answer", "hangup"])
        await d.stop()
        await client.aclose()
    assert ok
    assert "failed unexpectedly" in caplog.text


async def test_one_prober_while_down_with_slow_posts(fake: FakeZammad, tmp_path: Path) -> None:
    """While Zammad is down only the prober posts: never two requests at once."""
    from cti_bridge.zammad import ZammadError

    class Sick(ZammadClient):
        delivery: Delivery
        failures = 6
        in_flight = 0
        most_while_down = 0

        async def post(self, event: dict[str, Any]) -> Any:
            self.in_flight += 1
            if self.delivery.state != "ok":
                self.most_while_down = max(self.most_while_down, self.in_flight)
            try:
                await asyncio.sleep(0.005)  # a slow answer: other workers get to run meanwhile
                if self.failures:
                    self.failures -= 1
                    raise ZammadError("503 Service Unavailable", status_code=503)
                return await super().post(event)
            finally:
                self.in_flight -= 1

    cfg = zcfg(fake.url(), concurrency=4, max_backoff=0.02)
    with Outbox(tmp_path / "o.sqlite3") as ob:
        client = Sick(cfg)
        states: list[str] = []
        d = client.delivery = Delivery(ob, client, cfg, on_state=states.append)
        await d.start()
        # One call first: its failure turns the state to down before the backlog arrives.
        d.submit_many(call_events("first"))
        assert await until(lambda: d.state == "down")
        per_call = calls(8)
        d.submit_many(interleaved(per_call))
        want = {"first": ["newCall", "answer", "hangup"], **expected(per_call)}
        ok = await fake.async_wait_for(lambda f: stored_exactly(f, want), 10)
        retries = d.status()["retries"]
        await d.stop()
        await client.aclose()
    assert ok
    assert states == ["down", "ok"]
    assert client.most_while_down == 1  # the backlog of 9 calls waited behind one prober
    assert retries == 6

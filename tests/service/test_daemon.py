"""The daemon wired together: fake AMI server, real FastAGI client, fake Zammad on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from cti_bridge.calls.trace import read_trace
from cti_bridge.calls.tracker import CallRules, CallTracker
from cti_bridge.config import Config, parse_config
from cti_bridge.demo.zammad import FakeZammad
from cti_bridge.outbox.store import Outbox
from cti_bridge.service.daemon import Daemon
from cti_bridge.service.status import fetch_status
from tests.agi.test_server import agi_call, make_env
from tests.support.cli import cli
from tests.support.fake_ami import FakeAmi

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = "491710000002"
OUT_CID = "4930777000"


def make_config(tmp: Path, ami: FakeAmi, zammad_url: str, **over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "ami": {
            "port": ami.port,
            "username": ami.username,
            "secret": ami.secret,
            "ping_interval": 0.5,
            "ping_timeout": 1.0,
            "reconnect_interval": 0.2,
        },
        "zammad": {"url": zammad_url, "timeout": 1.0, "max_backoff": 0.2},
        "pbx": {"trunk_endpoints": ["carrier"]},
        "users": {"101": "Alice Agent"},
        "agi": {"listen": "127.0.0.1:0", "timeout": 1.5},
        "outbox": {"path": str(tmp / "outbox.sqlite3")},
        "status": {"socket": str(tmp / "status.sock")},
    }
    for section, values in over.items():
        data.setdefault(section, {}).update(values)
    return data


@asynccontextmanager
async def running(cfg: Config) -> AsyncIterator[Daemon]:
    daemon = Daemon(cfg)
    task = asyncio.ensure_future(daemon.run())
    try:
        yield daemon
    finally:
        daemon._stop.set()
        await asyncio.wait_for(task, 15)


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def lab(corpus: Path, name: str) -> list[dict[str, str]]:
    return list(read_trace(corpus / "lab-pjsip" / f"{name}.jsonl"))


def expected_for(events: Iterable[dict[str, str]]) -> dict[str, list[dict[str, Any]]]:
    tracker = CallTracker(CallRules(trunk_endpoints=("carrier",), users={"101": "Alice Agent"}))
    calls: dict[str, list[dict[str, Any]]] = {}
    for cti in [*tracker.feed_many(events), *tracker.flush()]:
        calls.setdefault(str(cti["callId"]), []).append(cti)
    return calls


def stored_fields(zammad: FakeZammad, call_id: str) -> list[dict[str, Any]]:
    row = zammad.calls().get(call_id)
    return [] if row is None else list(row.events)


def same_events(stored: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [e["event"] for e in stored] == [e["event"] for e in expected]
    for have, want in zip(stored, expected, strict=True):
        for key, value in want.items():
            got = have.get(key)
            if isinstance(value, list):
                assert (got if isinstance(got, list) else [got] if got else []) == value, key
            else:
                assert got == value, (key, have)


async def test_calls_from_ami_reach_zammad_in_order(tmp_path: Path, corpus_dir: Path) -> None:
    names = ["pjsip_in_group_answered", "pjsip_in_queue_abandoned", "pjsip_out_busy"]
    async with FakeAmi() as ami:
        with FakeZammad() as zammad:
            cfg = parse_config(make_config(tmp_path, ami, zammad.url()))
            async with running(cfg) as daemon:
                await ami.wait_login()
                events = [ev for name in names for ev in lab(corpus_dir, name)]
                for ev in events:
                    await ami.send_event(ev)
                expected = expected_for(events)
                await until(lambda: zammad.stored_count() == sum(map(len, expected.values())))
                for call_id, want in expected.items():
                    same_events(stored_fields(zammad, call_id), want)
                doc = daemon.snapshot()
                assert doc["ami"]["connected"] is True
                assert doc["calls"]["active"] == 0
                assert doc["zammad"]["state"] == "ok"
                assert "tok3n" not in json.dumps(doc)


@asynccontextmanager
async def answered_then_blind(
    tmp_path: Path, corpus_dir: Path, still_up: bool
) -> AsyncIterator[tuple[Daemon, FakeZammad, FakeAmi, list[dict[str, str]], str]]:
    """An answered call, then the AMI link drops; the PBX lists its channels or none."""
    events = lab(corpus_dir, "pjsip_in_anonymous")
    cut = next(i for i, ev in enumerate(events) if ev["Event"] == "BridgeEnter") + 2
    call_id = next(ev["Linkedid"] for ev in events if ev["Event"] == "Newchannel")
    async with FakeAmi() as ami:
        with FakeZammad() as zammad:
            cfg = parse_config(make_config(tmp_path, ami, zammad.url()))
            async with running(cfg) as daemon:
                await ami.wait_login()
                for ev in events[:cut]:
                    await ami.send_event(ev)
                await until(lambda: zammad.stored(call_id) == ["newCall", "answer"])
                assert daemon.tracker.active_calls == 1
                ami.channels = [
                    {**{k: v for k, v in ev.items() if k != "Event"}, "ChannelState": "6"}
                    for ev in events[:cut]
                    if ev["Event"] == "Newchannel" and still_up
                ]
                ami.disconnect_all()
                await ami.wait_login(2)
                yield daemon, zammad, ami, events[cut:], call_id


async def test_resync_closes_a_call_that_ended_while_disconnected(
    tmp_path: Path, corpus_dir: Path
) -> None:
    async with answered_then_blind(tmp_path, corpus_dir, still_up=False) as ctx:
        daemon, zammad, _, _, call_id = ctx
        await until(lambda: zammad.stored(call_id) == ["newCall", "answer", "hangup"])
        hangup = stored_fields(zammad, call_id)[-1]
        assert hangup["cause"] == "normalClearing"
        assert hangup["direction"] == "in"
        assert daemon.tracker.active_calls == 0


async def test_resync_keeps_calls_still_up(tmp_path: Path, corpus_dir: Path) -> None:
    async with answered_then_blind(tmp_path, corpus_dir, still_up=True) as ctx:
        daemon, zammad, ami, rest, call_id = ctx
        await asyncio.sleep(0.5)
        assert daemon.tracker.active_calls == 1
        for ev in rest:
            await ami.send_event(ev)
        await until(lambda: zammad.stored(call_id) == ["newCall", "answer", "hangup"])


async def test_without_the_agi_hook_a_rejected_caller_is_hung_up_over_ami(
    tmp_path: Path, corpus_dir: Path
) -> None:
    events = lab(corpus_dir, "pjsip_in_all_busy")
    root = events[2]
    fanout = next(i for i, e in enumerate(events) if e["Event"] == "DialBegin")
    async with FakeAmi() as ami:
        ami.channels.append({"Channel": root["Channel"], "Linkedid": root["Linkedid"]})
        with FakeZammad(blocked=(BLOCKED,)) as zammad:
            cfg = parse_config(make_config(tmp_path, ami, zammad.url()))
            async with running(cfg):
                await ami.wait_login()
                for ev in events[: fanout + 1]:  # the held newCall goes out at the first ring
                    await ami.send_event(ev)
                await until(lambda: bool(ami.hangups))
                assert ami.hangups == [{"Channel": root["Channel"], "Cause": "17"}]
                assert zammad.stored(root["Linkedid"]) == ["newCall"]
                # An answer that is not a reject leaves other callers alone.
                other = lab(corpus_dir, "pjsip_in_group_answered")
                for ev in other:
                    await ami.send_event(ev)
                other_id = other[2]["Linkedid"]
                await until(lambda: "hangup" in zammad.stored(other_id))
                assert len(ami.hangups) == 1


async def test_an_unwritable_outbox_holds_events_until_it_recovers(
    tmp_path: Path, corpus_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events = lab(corpus_dir, "pjsip_in_group_answered")
    want = expected_for(events)
    async with FakeAmi() as ami:
        with FakeZammad() as zammad:
            cfg = parse_config(make_config(tmp_path, ami, zammad.url()))
            async with running(cfg) as daemon:
                await ami.wait_login()
                real = daemon.outbox.put_many
                failures = 3

                def flaky(*args: Any, **kw: Any) -> list[int]:
                    nonlocal failures
                    if failures:
                        failures -= 1
                        raise sqlite3.OperationalError("disk I/O error")
                    return real(*args, **kw)

                daemon.outbox.put_many = flaky  # type: ignore[method-assign]
                for ev in events:
                    await ami.send_event(ev)
                for call_id, ctis in want.items():
                    names = [c["event"] for c in ctis]
                    await until(lambda c=call_id, n=names: zammad.stored(c) == n)
                assert failures == 0
    assert "cannot write" in caplog.text and "outbox writable again" in caplog.text


async def test_agi_rejects_a_blocked_caller_before_anything_rings(
    tmp_path: Path, corpus_dir: Path
) -> None:
    events = lab(corpus_dir, "pjsip_in_all_busy")
    root = events[2]
    assert root["Event"] == "Newchannel" and root["CallerIDNum"] == BLOCKED
    async with FakeAmi() as ami:
        with FakeZammad(blocked=(BLOCKED,)) as zammad:
            cfg = parse_config(make_config(tmp_path, ami, zammad.url()))
            async with running(cfg) as daemon:
                await ami.wait_login()
                await ami.send_event(root)
                assert daemon.agi is not None
                env = make_env(
                    agi_channel=root["Channel"],
                    agi_uniqueid=root["Uniqueid"],
                    agi_callerid=BLOCKED,
                    agi_calleridname="",
                    agi_context="from-trunk",
                    agi_extension=root["Exten"],
                    agi_dnid=root["Exten"],
                )
                commands = await agi_call(daemon.agi, env, reply=_reply(root["Linkedid"]))
                assert "EXEC Hangup 17" in commands
                assert any(c.startswith("SET VARIABLE CTI_ACTION reject") for c in commands)
                call_id = root["Linkedid"]
                assert zammad.stored(call_id) == ["newCall"]
                # The rest of the call arrives over AMI: no second newCall, one hangup.
                for ev in events[3:]:
                    await ami.send_event(ev)
                await until(lambda: zammad.stored(call_id) == ["newCall", "hangup"])
                newcalls = [r for r in zammad.requests if r.get("event") == "newCall"]
                assert len(newcalls) == 1
                assert newcalls[0].get("from") == BLOCKED
                assert newcalls[0].get("direction") == "in"


async def test_agi_sets_outbound_caller_id(tmp_path: Path, corpus_dir: Path) -> None:
    events = lab(corpus_dir, "pjsip_out_answered")
    root = events[2]
    assert root["Event"] == "Newchannel" and root["Channel"].startswith("PJSIP/alice")
    async with FakeAmi() as ami:
        with FakeZammad(default_caller_id=OUT_CID) as zammad:
            cfg = parse_config(make_config(tmp_path, ami, zammad.url()))
            async with running(cfg) as daemon:
                await ami.wait_login()
                assert daemon.agi is not None
                env = make_env(
                    args=["491719990007"],
                    agi_channel=root["Channel"],
                    agi_uniqueid=root["Uniqueid"],
                    agi_callerid="101",
                    agi_calleridname="Alice Agent",
                    agi_context="from-internal",
                    agi_extension=root["Exten"],
                )
                commands = await agi_call(daemon.agi, env, reply=_reply(root["Linkedid"]))
                assert f"SET VARIABLE CALLERID(num) {OUT_CID}" in commands
                for ev in events[2:]:
                    await ami.send_event(ev)
                call_id = root["Linkedid"]
                await until(lambda: zammad.stored(call_id) == ["newCall", "answer", "hangup"])
                first = stored_fields(zammad, call_id)[0]
                assert first["direction"] == "out"
                assert first["to"] == "491719990007"
                assert daemon.snapshot()["agi"]["decisions"]["dial"] == 1


async def test_agi_fails_open_when_zammad_is_down(tmp_path: Path, corpus_dir: Path) -> None:
    root = lab(corpus_dir, "pjsip_in_all_busy")[2]
    async with FakeAmi() as ami:
        zammad = FakeZammad(blocked=(BLOCKED,))
        zammad.start()
        url = zammad.url()
        zammad.down()
        try:
            cfg = parse_config(make_config(tmp_path, ami, url, agi={"timeout": 0.5}))
            async with running(cfg) as daemon:
                await ami.wait_login()
                assert daemon.agi is not None
                env = make_env(agi_channel=root["Channel"], agi_callerid=BLOCKED)
                commands = await agi_call(daemon.agi, env, reply=_reply(root["Linkedid"]))
                assert "EXEC Hangup 17" not in commands
                assert any(c.startswith("SET VARIABLE CTI_ACTION none") for c in commands)
                # The newCall waits in the outbox and reaches Zammad once it is back.
                zammad.up()
                await until(lambda: zammad.stored(root["Linkedid"]) == ["newCall"])
        finally:
            zammad.stop()


async def test_status_socket_tells_the_truth(tmp_path: Path) -> None:
    async with FakeAmi() as ami:
        with FakeZammad() as zammad:
            cfg = parse_config(make_config(tmp_path, ami, zammad.url()))
            async with running(cfg):
                await ami.wait_login()
                await until(lambda: Path(cfg.status.socket).exists())
                doc = await asyncio.to_thread(fetch_status, cfg.status.socket)
                assert doc["ami"]["connected"] is True
                assert doc["zammad"]["state"] == "ok"
                assert doc["zammad"]["url"].endswith("/api/v1/cti/***")
                assert doc["calls"]["active"] == 0
                assert doc["outbox"]["pending"] == 0
                assert doc["uptime_s"] >= 0
                ami.accept_logins = False
                ami.disconnect_all()
                async with asyncio.timeout(10):
                    while (await asyncio.to_thread(fetch_status, cfg.status.socket))["ami"][
                        "connected"
                    ]:
                        await asyncio.sleep(0.05)
                doc = await asyncio.to_thread(fetch_status, cfg.status.socket)
                assert doc["ami"]["last_error"]


def _reply(linkedid: str) -> Callable[[str], bytes]:
    def reply(cmd: str) -> bytes:
        if cmd.startswith("GET VARIABLE"):
            return f"200 result=1 ({linkedid})\n".encode()
        if cmd.startswith("EXEC Hangup"):
            return b"200 result=-1\n"
        return b"200 result=1\n"

    return reply


# --------------------------------------------------------------------------- process life


def _write_config(tmp: Path, ami: FakeAmi, url: str) -> Path:
    data = make_config(tmp, ami, url)
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{json.dumps(key)} = {json.dumps(value)}")
    path = tmp / "cti-bridge.toml"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


async def _start_process(config: Path, notify: Path | None) -> asyncio.subprocess.Process:
    env = dict(os.environ)
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cti_bridge",
        "run",
        "--config",
        str(config),
        "--log-level",
        "debug",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def _datagrams(sock: socket.socket, until_text: str, timeout: float = 15.0) -> list[str]:
    got: list[str] = []
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        while not any(until_text in g for g in got):
            got.append((await loop.sock_recv(sock, 4096)).decode())
    return got


async def test_process_sigterm_keeps_undelivered_events_and_notifies_systemd(
    tmp_path: Path, corpus_dir: Path
) -> None:
    events = lab(corpus_dir, "pjsip_in_group_answered")
    call_id = events[2]["Linkedid"]
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.setblocking(False)
    zammad = FakeZammad()
    zammad.start()
    url = zammad.url()
    zammad.down()  # Zammad is down while the call happens
    try:
        async with FakeAmi() as ami:
            config = _write_config(tmp_path, ami, url)
            proc = await _start_process(config, notify)
            try:
                msgs = await _datagrams(sock, "READY=1")
                assert any("STATUS=" in m for m in msgs)
                for ev in events:
                    await ami.send_event(ev)
                await asyncio.sleep(1.0)
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 20) == 0
                await _datagrams(sock, "STOPPING=1", timeout=2)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            box = Outbox(tmp_path / "outbox.sqlite3")
            assert [r.name for r in box.pending()] == ["newCall", "answer", "hangup"]
            box.close()
            # Next start with Zammad back: the backlog drains, in order, once.
            zammad.up()
            proc = await _start_process(config, None)
            try:
                await until(lambda: zammad.stored(call_id) == ["newCall", "answer", "hangup"], 20)
            finally:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 20)
            assert sum(1 for r in zammad.requests if r.get("event") == "newCall") == 1
    finally:
        zammad.stop()
        sock.close()


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[ami]\nusername = "x"\nsecret = "y"\nport = "5038"\n[zammad]\nurl = "http://z/api/v1/cti/t"\n'
    )
    res = cli("run", "--config", str(path))
    assert res.returncode == 2
    assert "[ami] port" in res.stderr and str(path) in res.stderr
    assert "Traceback" not in res.stderr


def test_status_without_daemon_exits_3(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[ami]\nusername = "x"\nsecret = "y"\n[zammad]\nurl = "http://z/api/v1/cti/t"\n'
        f'[status]\nsocket = "{tmp_path / "none.sock"}"\n'
    )
    path.chmod(0o600)
    res = cli("status", "--json", "--config", str(path))
    assert res.returncode == 3
    assert res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1


def test_replay_cli_prints_posted_fields(corpus_dir: Path) -> None:
    trace = corpus_dir / "lab-pjsip" / "pjsip_in_queue_answered.jsonl"
    res = cli("replay", str(trace))
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [e["event"] for e in lines] == ["newCall", "answer", "hangup"]
    assert lines[0]["queue"] == "helpdesk"
    assert lines[0]["user[]"] == ["Alice Agent", "Bob Builder"]
    assert lines[1]["answeringNumber"] == "101"
    assert lines[2]["cause"] == "normalClearing"

"""AmiClient against the fake AMI server over real loopback TCP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from cti_bridge.ami.client import AmiClient
from cti_bridge.config import AmiConfig
from tests.support.fake_ami import (
    TEST_WANTED_EVENTS,
    FakeAmi,
    Recorder,
    ami_config,
    marker_event,
)

pytestmark = pytest.mark.timeout(30)

SECRET = "very-s3cret-pw"


@asynccontextmanager
async def running(
    server: FakeAmi,
    rec: Recorder | None = None,
    on_event: Callable[[dict[str, str]], None] | None = None,
    **kwargs: Any,
) -> AsyncIterator[AmiClient]:
    rec = rec or Recorder()
    cfg_over = {k: kwargs.pop(k) for k in list(kwargs) if k in AmiConfig.__dataclass_fields__}
    kwargs.setdefault("wanted_events", TEST_WANTED_EVENTS)
    client = AmiClient(
        ami_config(server, **cfg_over),
        on_event or rec.on_event,
        on_resync=rec.on_resync,
        on_state=rec.on_state,
        **kwargs,
    )
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


@pytest.fixture
async def server() -> AsyncIterator[FakeAmi]:
    srv = FakeAmi(secret=SECRET)
    await srv.start()
    yield srv
    await srv.stop()


def chan(n: int) -> dict[str, str]:
    return {
        "Channel": f"PJSIP/carrier-{n:08x}",
        "ChannelState": "6",
        "ChannelStateDesc": "Up",
        "CallerIDNum": "491710000001",
        "Uniqueid": f"1700000000.{n}",
        "Linkedid": f"1700000000.{n}",
        "Application": "Dial",
        "Duration": "00:00:12",
    }


async def test_login_and_events_arrive_in_order_as_plain_dicts(server: FakeAmi) -> None:
    rec = Recorder()
    async with running(server, rec) as client:
        assert await client.wait_logged_in(5)
        assert client.connected and client.since is not None
        for i in range(50):
            await server.send_event({"Event": "Newstate", "Uniqueid": f"1.{i}"})
            await server.send_event({"Event": "VarSet", "Variable": "X", "Value": str(i)})
        await server.send_raw(marker_event("end"))
        await rec.wait_marker("end")
        states = rec.named("Newstate")
        assert [e["Uniqueid"] for e in states] == [f"1.{i}" for i in range(50)]
        assert all(type(e) is dict for e in rec.events)
        assert states[0] == {"Event": "Newstate", "Privilege": "call,all", "Uniqueid": "1.0"}
        assert rec.named("FullyBooted"), "the post-login FullyBooted is an event too"
        assert not rec.named("VarSet")
        assert client.stats.events_filtered >= 50
        assert client.stats.events_read == len(rec.events)
        snap = client.snapshot()
        assert snap["connected"] is True and 0 <= snap["last_event_age_s"] < 5
        assert snap["events_filtered"] == client.stats.events_filtered


async def test_wanted_events_are_configurable(server: FakeAmi) -> None:
    rec = Recorder()
    async with running(server, rec, wanted_events=frozenset({"VarSet", "UserEvent"})) as client:
        assert await client.wait_logged_in(5)
        await server.send_event({"Event": "Newchannel", "Uniqueid": "1.1"})
        await server.send_event({"Event": "VarSet", "Variable": "X"})
        await server.send_raw(marker_event("end"))
        await rec.wait_marker("end")
        assert [e["Event"] for e in rec.events] == ["VarSet", "UserEvent"]


async def test_resync_after_every_login_and_events_after_reconnect(server: FakeAmi) -> None:
    rec = Recorder()
    server.channels = [chan(1), chan(2)]
    async with running(server, rec) as client:
        await rec.wait(lambda: len(rec.resyncs) == 1)
        assert [c["Channel"] for c in rec.resyncs[0]] == [chan(1)["Channel"], chan(2)["Channel"]]
        assert rec.resyncs[0][0]["Uniqueid"] == "1700000000.1"
        assert all("content" not in c for c in rec.resyncs[0])
        # list items are the action's answer, not events for the tracker
        assert not rec.named("CoreShowChannel")

        server.channels = [chan(2), chan(3)]  # 1 ended and 3 began while we were blind
        server.disconnect_all()
        await server.wait_login(2)
        await rec.wait(lambda: len(rec.resyncs) == 2)
        assert [c["Uniqueid"] for c in rec.resyncs[1]] == ["1700000000.2", "1700000000.3"]
        assert client.reconnects == 1
        await server.send_event({"Event": "Hangup", "Uniqueid": "1700000000.3", "Cause": "16"})
        await rec.wait(lambda: rec.named("Hangup"))
        assert client.connected


async def test_resync_with_empty_list_is_still_reported(server: FakeAmi) -> None:
    rec = Recorder()
    async with running(server, rec):
        await rec.wait(lambda: rec.resyncs)
        assert rec.resyncs == [[]]


async def test_resync_is_delivered_in_stream_order(server: FakeAmi) -> None:
    """Events interleaved in the list reach on_event; those after it come after on_resync."""
    order: list[str] = []
    rec = Recorder()

    def on_event(ev: dict[str, str]) -> None:
        order.append(ev["Event"])
        rec.on_event(ev)

    def on_resync(chans: list[dict[str, str]]) -> None:
        order.append(f"resync:{len(chans)}")
        rec.on_resync(chans)

    server.channels = [chan(1), chan(2)]
    server.list_interleave = [{"Event": "Newchannel", "Uniqueid": "9.9"}]
    client = AmiClient(ami_config(server), on_event, on_resync=on_resync)
    await client.start()
    try:
        await rec.wait(lambda: rec.resyncs)
        await server.send_event({"Event": "Hangup", "Uniqueid": "9.9"})
        await rec.wait(lambda: rec.named("Hangup"))
        assert order[-3:] == ["Newchannel", "resync:2", "Hangup"]
    finally:
        await client.stop()


async def test_resync_not_permitted_is_logged_and_nothing_called(
    server: FakeAmi, caplog: pytest.LogCaptureFixture
) -> None:
    server.denied = {"coreshowchannels"}
    rec = Recorder()
    with caplog.at_level(logging.INFO, logger="cti_bridge"):
        async with running(server, rec) as client:
            assert await client.wait_logged_in(5)
            await rec.wait(lambda: "CoreShowChannels refused" in caplog.text)
            await server.send_raw(marker_event("still-alive"))
            await rec.wait_marker("still-alive")
            assert rec.resyncs == []
            assert client.connected
            checks = await client.check(2)
            assert ("AMI CoreShowChannels (resync)", False) in [(n, ok) for n, ok, _ in checks]
    assert "Permission denied" in caplog.text


async def test_login_refused_then_recovers_without_restart(
    server: FakeAmi, caplog: pytest.LogCaptureFixture
) -> None:
    server.accept_logins = False
    rec = Recorder()
    with caplog.at_level(logging.DEBUG):
        async with running(server, rec, login_retry_interval=0.3) as client:
            await rec.wait(lambda: client.login_failed)
            assert client.last_error == "AMI login failed"
            assert not client.connected
            assert client.snapshot()["login_failed"] is True
            assert rec.states >= 1
            assert not await client.wait_logged_in(0.05)
            server.accept_logins = True
            assert await client.wait_logged_in(5)
            assert not client.login_failed and client.last_error is None
    assert "AMI login failed" in caplog.text
    assert SECRET not in caplog.text
    assert server.logins_failed >= 1


async def test_login_failure_retries_slowly(server: FakeAmi) -> None:
    server.accept_logins = False
    async with running(server, login_retry_interval=30.0) as client:
        await server.wait_for(lambda: client.login_failed)
        await asyncio.sleep(0.5)  # ten reconnect intervals: still only the first attempt
        assert server.logins_failed == 1


async def test_connection_refused_then_server_appears(server: FakeAmi) -> None:
    port = server.port
    await server.stop()
    rec = Recorder()
    async with running(server, rec) as client:  # start() returns despite the refusal
        assert not client.connected
        assert client.last_error is not None and "cannot connect" in client.last_error
        assert client.snapshot()["connected"] is False
        await server.start()
        assert server.port == port
        assert await client.wait_logged_in(5)
        await asyncio.sleep(0.3)
        assert server.logins_ok == 1, "one connection, no parallel retry loops"
        assert len(server.clients) == 1


async def test_utf8_character_split_across_reads(server: FakeAmi) -> None:
    rec = Recorder()
    async with running(server, rec) as client:
        assert await client.wait_logged_in(5)
        data = "Event: Newchannel\r\nCallerIDName: Jürgen Müller\r\nUniqueid: 1.1\r\n\r\n".encode()
        first_u = data.index("ü".encode())
        second_u = data.index("ü".encode(), first_u + 2)
        crlf = data.index(b"\r\n") + 1  # between CR and LF
        await server.send_raw(data, split_at=[crlf, first_u + 1, second_u + 1])
        await rec.wait(lambda: rec.named("Newchannel"))
        assert rec.named("Newchannel")[0]["CallerIDName"] == "Jürgen Müller"
        assert client.stats.frames_malformed == 0


async def test_raising_callback_does_not_kill_the_connection(
    server: FakeAmi, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()

    def on_event(ev: dict[str, str]) -> None:
        if ev.get("Uniqueid") == "boom":
            raise RuntimeError("tracker bug")
        rec.on_event(ev)

    async with running(server, rec, on_event=on_event) as client:
        assert await client.wait_logged_in(5)
        for _ in range(3):
            await server.send_event({"Event": "Newchannel", "Uniqueid": "boom"})
        await server.send_event({"Event": "Newchannel", "Uniqueid": "ok"})
        await rec.wait(lambda: rec.named("Newchannel"))
        assert client.stats.callback_errors == 3
        assert client.connected and client.reconnects == 0
        assert server.logins_ok == 1
    assert caplog.text.count("AMI event handler failed") == 1, "rate-limited per kind"


async def test_half_open_connection_is_detected_and_reconnected(server: FakeAmi) -> None:
    rec = Recorder()
    async with running(server, rec) as client:
        assert await client.wait_logged_in(5)
        server.stalled = True
        await rec.wait(lambda: not client.connected)
        assert client.last_error is not None and "ping timeout" in client.last_error
        server.stalled = False
        await server.wait_login(2)
        assert await client.wait_logged_in(5)
        await server.send_raw(marker_event("after"))
        await rec.wait_marker("after")
        assert client.reconnects == 1


async def test_unanswered_login_is_dropped_and_retried(server: FakeAmi) -> None:
    server.stalled = True  # banner, then silence
    async with running(server) as client:
        await server.wait_for(lambda: client.last_error == "AMI login not answered")
        assert not client.connected and not client.login_failed
        server.stalled = False
        assert await client.wait_logged_in(5)


async def test_hangup_action_reaches_the_server(server: FakeAmi) -> None:
    server.channels = [chan(5)]
    async with running(server) as client:
        assert await client.wait_logged_in(5)
        assert await client.hangup("PJSIP/carrier-00000005", cause=21)
        assert server.hangups[-1] == {"Channel": "PJSIP/carrier-00000005", "Cause": "21"}
        assert not await client.hangup("PJSIP/nope-00000000")


async def test_hangup_when_not_connected_returns_false(server: FakeAmi) -> None:
    await server.stop()
    async with running(server) as client:
        assert await client.hangup("PJSIP/x") is False


async def test_check_reports_what_it_can(server: FakeAmi) -> None:
    server.channels = [chan(1)]
    async with running(server) as client:
        checks = await client.check(3)
        names = [n for n, _, _ in checks]
        assert names == [
            "AMI login",
            "AMI CoreShowChannels (resync)",
            "AMI system events",
            "AMI call events",
        ]
        assert all(ok for _, ok, _ in checks)
        assert "1 active channel" in checks[1][2]


async def test_check_reports_login_failure(server: FakeAmi) -> None:
    server.accept_logins = False
    async with running(server) as client:
        checks = await client.check(0.5)
        assert len(checks) == 1
        name, ok, detail = checks[0]
        assert name == "AMI login" and not ok and "AMI login failed" in detail
        assert SECRET not in detail


async def test_shutdown_event_then_reconnect(server: FakeAmi) -> None:
    rec = Recorder()
    # The bridge reads no Shutdown event (the connection loss is what counts); let it through
    # here only as the test's sync point.
    wanted = TEST_WANTED_EVENTS | {"Shutdown"}
    async with running(server, rec, wanted_events=wanted) as client:
        assert await client.wait_logged_in(5)
        await server.shutdown()
        await rec.wait(lambda: rec.named("Shutdown"))
        await server.wait_login(2)
        assert await client.wait_logged_in(5)


async def test_stop_while_disconnected_stops_retrying(server: FakeAmi) -> None:
    async with running(server) as client:
        assert await client.wait_logged_in(5)
        server.disconnect_all()
        await server.wait_for(lambda: not client.connected)
    before = server.logins_ok
    await asyncio.sleep(0.3)
    assert server.logins_ok == before
    assert not server.clients


async def test_on_state_called_on_changes(server: FakeAmi) -> None:
    rec = Recorder()
    async with running(server, rec) as client:
        assert await client.wait_logged_in(5)
        after_login = rec.states
        assert after_login >= 1
        server.disconnect_all()
        await rec.wait(lambda: rec.states > after_login)
        assert await client.wait_logged_in(5)


async def test_unanswered_pings_during_a_flood_do_not_drop_the_link(server: FakeAmi) -> None:
    """A Pong queued behind a flood of events is late, not lost: the link stays up."""
    rec = Recorder()
    dispatch = server._dispatch

    async def no_pong(client: Any, headers: list[tuple[str, str]]) -> bool:
        if any(k.lower() == "action" and v.lower() == "ping" for k, v in headers):
            return True  # swallowed: as if queued behind the events
        return await dispatch(client, headers)

    server._dispatch = no_pong  # type: ignore[method-assign]
    async with running(server, rec, ping_timeout=0.3) as client:
        assert await client.wait_logged_in(5)
        for i in range(40):  # 2 s of events, several ping timeouts long
            await server.send_event({"Event": "Newchannel", "Uniqueid": f"f{i}"})
            await asyncio.sleep(0.05)
        assert client.connected and client.reconnects == 0
        # Once the events stop too, the link is taken for dead and re-opened.
        await rec.wait(lambda: not client.connected or client.reconnects > 0)

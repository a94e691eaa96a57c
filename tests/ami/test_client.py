"""AmiClient against the fake AMI server over real loopback TCP."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cti_bridge.ami.client import AmiClient
from cti_bridge.ami.manager import LinkState
from tests.support.ami_client import SECRET, chan, running
from tests.support.fake_ami import TEST_WANTED_EVENTS, FakeAmi, Recorder, ami_config, marker_event

pytestmark = pytest.mark.timeout(30)


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


async def test_link_state_follows_the_connection(server: FakeAmi) -> None:
    rec = Recorder()
    client = AmiClient(ami_config(server), rec.on_event, on_state=rec.on_state)
    assert client.link is LinkState.STOPPED
    await client.start()
    try:
        assert await client.wait_logged_in(5)
        assert client.link is LinkState.LOGGED_IN and client.connected
        server.disconnect_all()
        await rec.wait(lambda: client.link is not LinkState.LOGGED_IN)
        assert client.link in (LinkState.CONNECTING, LinkState.LOGGING_IN)
        assert not client.connected
        assert await client.wait_logged_in(5)
    finally:
        await client.stop()
    assert client.link is LinkState.STOPPED and not client.connected

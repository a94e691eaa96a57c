"""The channel listing after every login, against the fake AMI server."""

from __future__ import annotations

import logging

import pytest
from panoramisk.message import Message

from cti_bridge.ami.client import AmiClient
from cti_bridge.ami.resync import plain
from tests.support.ami_client import chan, running
from tests.support.fake_ami import FakeAmi, Recorder, ami_config, marker_event

pytestmark = pytest.mark.timeout(30)


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


def test_plain_joins_repeated_headers_and_drops_the_body_slot() -> None:
    message = Message({"Event": "CoreShowChannel", "Uniqueid": "1.1"})
    message["Variable"] = ["a=1", "b=2"]
    message["content"] = "body"
    assert plain(message) == {"Event": "CoreShowChannel", "Uniqueid": "1.1", "Variable": "a=1\nb=2"}

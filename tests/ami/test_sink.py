"""The guarded event callback: a raising handler costs one event, not the connection."""

from __future__ import annotations

import logging

import pytest

from cti_bridge.ami.protocol import ProtoStats, RateLimitedLog
from cti_bridge.ami.sink import EventSink
from tests.support.ami_client import running
from tests.support.fake_ami import FakeAmi, Recorder

pytestmark = pytest.mark.timeout(30)


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


def test_sink_notes_what_events_prove_about_read_permissions() -> None:
    seen: list[dict[str, str]] = []
    sink = EventSink(seen.append, ProtoStats(), RateLimitedLog(logging.getLogger("test")))
    sink({"Event": "Newexten", "Privilege": "dialplan,all"})
    assert not sink.call_event_seen and not sink.fully_booted
    sink({"Event": "FullyBooted", "Privilege": "system,all"})
    sink({"Event": "Newchannel", "Privilege": "call,all"})
    assert sink.fully_booted and sink.call_event_seen
    assert [e["Event"] for e in seen] == ["Newexten", "FullyBooted", "Newchannel"]


def test_sink_notes_voicemail_and_unfiltered_dialplan_steps() -> None:
    sink = EventSink(lambda e: None, ProtoStats(), RateLimitedLog(logging.getLogger("test")))
    sink({"Event": "Newexten", "Privilege": "dialplan,all", "Application": "VoiceMail"})
    assert sink.voicemail_seen and not sink.unfiltered_dialplan
    sink({"Event": "Newexten", "Privilege": "dialplan,all", "Application": "VoiceMailMain"})
    sink({"Event": "Newexten", "Privilege": "dialplan,all", "Application": "Dial"})
    assert sink.unfiltered_dialplan == "VoiceMailMain"  # the first one tells


def test_sink_counts_a_raising_handler_and_goes_on() -> None:
    stats = ProtoStats()

    def boom(event: dict[str, str]) -> None:
        raise KeyError(event["Event"])

    sink = EventSink(boom, stats, RateLimitedLog(logging.getLogger("test")))
    sink({"Event": "Hangup"})
    sink({"Event": "Hangup"})
    assert stats.callback_errors == 2

"""Hostile and broken AMI input: the client counts, logs, and carries on with the next frame.

Most cases go over real loopback TCP through the fake server; the chunking property feeds the
protocol's ``data_received`` directly because it needs thousands of random splits.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti_bridge.ami.client import AmiClient
from cti_bridge.ami.protocol import (
    DEFAULT_MAX_FRAME,
    DEFAULT_WANTED_EVENTS,
    LeanAMIProtocol,
    ProtoStats,
    parse_frame,
)
from tests.support.fake_ami import (
    TEST_WANTED_EVENTS,
    FakeAmi,
    Recorder,
    ami_config,
    frame,
    marker_event,
)

pytestmark = pytest.mark.timeout(30)

Link = tuple[FakeAmi, AmiClient, Recorder]


@pytest.fixture
async def link() -> AsyncIterator[Link]:
    server = FakeAmi()
    await server.start()
    rec = Recorder()
    client = AmiClient(
        ami_config(server), rec.on_event, on_resync=rec.on_resync, wanted_events=TEST_WANTED_EVENTS
    )
    await client.start()
    assert await client.wait_logged_in(5)
    await rec.wait(lambda: rec.resyncs)
    yield server, client, rec
    await client.stop()
    await server.stop()


async def send_and_settle(link: Link, data: bytes, *, together: bool = False, **kw: Any) -> None:
    """Send raw bytes, then a marker event; return once the client has taken the marker.

    ``together``: in the same write as the marker (one read on the client side).
    """
    server, _, rec = link
    if together:
        await server.send_raw(data + marker_event("next"), **kw)
    else:
        await server.send_raw(data, **kw)
        await server.send_raw(marker_event("next"))
    await rec.wait_marker("next")


def _buffer_len(client: AmiClient) -> int:
    mgr = client._mgr
    assert mgr is not None and mgr.protocol is not None
    return len(mgr.protocol._buf)


async def test_line_without_colon_keeps_the_rest_of_the_event(link: Link) -> None:
    _, client, rec = link
    await send_and_settle(link, b"Event: Hangup\r\nthis line has no colon\r\nUniqueid: 1.1\r\n\r\n")
    assert rec.named("Hangup") == [{"Event": "Hangup", "Uniqueid": "1.1"}]
    assert client.stats.frames_malformed == 1
    assert client.connected


async def test_garbage_frames_without_event_or_response_are_dropped(link: Link) -> None:
    _, client, rec = link
    before = len(rec.events)
    await send_and_settle(
        link, b"garbage\r\nmore garbage\r\n\r\nFoo: bar\r\nBaz: 1\r\n\r\n\r\n\r\n"
    )
    assert len(rec.events) == before + 1
    assert client.stats.frames_malformed == 2


async def test_one_megabyte_header_value_is_dropped_and_memory_stays_bounded(
    link: Link, caplog: pytest.LogCaptureFixture
) -> None:
    _, client, rec = link
    huge = b"Event: Newchannel\r\nCallerIDName: " + b"A" * (1 << 20) + b"\r\nUniqueid: 2.2\r\n\r\n"
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, _buffer_len(client))
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    # In pieces, so the client sees the frame grow across many reads.
    await send_and_settle(link, huge, split_at=range(8192, len(huge), 65536), pause=0.001)
    watcher.cancel()
    assert client.stats.frames_oversized == 1
    assert not rec.named("Newchannel")
    assert all(len(v) < DEFAULT_MAX_FRAME for e in rec.events for v in e.values())
    assert peak <= DEFAULT_MAX_FRAME
    assert _buffer_len(client) == 0
    assert "larger than" in caplog.text
    assert client.connected


async def test_oversized_frame_in_one_read_is_dropped(link: Link) -> None:
    _, client, rec = link
    big = frame({"Event": "Newchannel", "CallerIDName": "B" * (DEFAULT_MAX_FRAME + 10)})
    await send_and_settle(link, big, together=True)
    assert client.stats.frames_oversized == 1
    assert not rec.named("Newchannel")


async def test_invalid_utf8_becomes_replacement_characters(link: Link) -> None:
    _, _, rec = link
    await send_and_settle(
        link, b"Event: Newchannel\r\nCallerIDName: M\xfcller \xff\xfe\r\nUniqueid: 3\r\n\r\n"
    )
    (ev,) = rec.named("Newchannel")
    assert ev["CallerIDName"] == "M\ufffdller \ufffd\ufffd"
    assert ev["Uniqueid"] == "3"


async def test_nul_bytes_are_removed(link: Link) -> None:
    _, _, rec = link
    await send_and_settle(
        link, b"Event: Newchannel\r\nCallerIDName: a\x00b\r\nUni\x00queid: 4\r\n\r\n"
    )
    assert rec.named("Newchannel") == [
        {"Event": "Newchannel", "CallerIDName": "ab", "Uniqueid": "4"}
    ]


async def test_ten_thousand_unknown_events_are_filtered(link: Link) -> None:
    _, client, rec = link
    before = client.stats.events_filtered
    blob = b"".join(
        frame({"Event": f"Unknown{i % 7}", "Privilege": "dialplan,all", "N": str(i)})
        for i in range(10_000)
    )
    await send_and_settle(link, blob, together=True)
    assert client.stats.events_filtered - before == 10_000
    assert not any(e["Event"].startswith("Unknown") for e in rec.events)


async def test_frame_cut_by_disconnect_is_not_half_delivered(link: Link) -> None:
    server, client, rec = link
    await server.send_raw(b"Event: Hangup\r\nUniqueid: 5.5\r\nCause: 1")
    await server.wait_for(lambda: _buffer_len(client) > 0)
    server.disconnect_all()
    await server.wait_login(2)
    await rec.wait(lambda: len(rec.resyncs) == 2)
    await server.send_raw(marker_event("after"))
    await rec.wait_marker("after")
    assert not rec.named("Hangup")
    assert client.stats.frames_malformed == 1


async def test_event_storm_for_one_channel(link: Link) -> None:
    _, client, rec = link
    per_kind = 5_000
    parts = []
    for i in range(per_kind):
        parts.append(frame({"Event": "Newstate", "Channel": "PJSIP/x-1", "Seq": str(i)}))
        parts.append(frame({"Event": "VarSet", "Channel": "PJSIP/x-1", "Value": str(i)}))
    read_before, filtered_before = client.stats.events_read, client.stats.events_filtered
    await send_and_settle(link, b"".join(parts), together=True)
    seqs = [int(e["Seq"]) for e in rec.named("Newstate")]
    assert seqs == list(range(per_kind))
    assert client.stats.events_read - read_before == per_kind + 1
    assert client.stats.events_filtered - filtered_before == per_kind


async def test_bare_lf_and_extra_blank_lines_are_tolerated(link: Link) -> None:
    _, client, rec = link
    await send_and_settle(
        link, b"Event: Newchannel\nUniqueid: 6\n\n\n\r\n\r\nEvent: Hangup\nUniqueid: 6\n\n"
    )
    assert [e["Event"] for e in rec.events[-3:]] == ["Newchannel", "Hangup", "UserEvent"]
    assert client.stats.frames_malformed == 0


async def test_unsolicited_response_is_ignored(link: Link) -> None:
    _, client, rec = link
    await send_and_settle(link, b"Response: Success\r\nActionID: not-ours\r\nMessage: hi\r\n\r\n")
    assert not [e for e in rec.events if "Response" in e]
    assert client.connected


# -- parser properties (no network) ------------------------------------------------------------


def _feed(chunks: list[bytes]) -> tuple[list[dict[str, str]], ProtoStats]:
    got: list[dict[str, str]] = []
    stats = ProtoStats()
    proto = LeanAMIProtocol(sink=got.append, stats=stats)
    for chunk in chunks:
        proto.data_received(chunk)
    return got, stats


_value = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n\x00"),
    max_size=20,
)
_event = st.fixed_dictionaries(
    {"Event": st.sampled_from(["Newchannel", "Hangup", "VarSet", "DialEnd"])},
    optional={"CallerIDName": _value, "Uniqueid": _value, "Exten": _value},
)


@settings(max_examples=150, deadline=None)
@given(events=st.lists(_event, max_size=8), cuts=st.lists(st.integers(0, 2000), max_size=12))
def test_any_chunking_gives_the_same_events(events: list[dict[str, str]], cuts: list[int]) -> None:
    data = b"Asterisk Call Manager/5.0.2\r\n" + b"".join(frame(e) for e in events)
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    got, stats = _feed(chunks)
    expected = [e for e in events if e["Event"] != "VarSet"]
    assert got == expected
    assert stats.events_filtered == len(events) - len(expected)
    assert stats.frames_malformed == 0


@settings(max_examples=150, deadline=None)
@given(
    framed=st.lists(st.tuples(_event, st.sampled_from(["\r\n", "\n"])), max_size=8),
    cuts=st.lists(st.integers(0, 2000), max_size=12),
    banner_eol=st.sampled_from(["\r\n", "\n"]),
)
def test_crlf_and_bare_lf_frames_mixed_give_the_same_events(
    framed: list[tuple[dict[str, str], str]], cuts: list[int], banner_eol: str
) -> None:
    # Asterisk sends CRLF; an LF-only peer (or a proxy that rewrote line ends) must work too,
    # frame by frame, whatever the read boundaries.
    text = "Asterisk Call Manager/5.0.2" + banner_eol
    for ev, eol in framed:
        text += "".join(f"{k}: {v}{eol}" for k, v in ev.items()) + eol
    data = text.encode("utf-8")
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    got, stats = _feed([data[a:b] for a, b in itertools.pairwise(bounds)])
    assert got == [e for e, _ in framed if e["Event"] != "VarSet"]
    assert stats.frames_malformed == 0


@settings(max_examples=150, deadline=None)
@given(junk=st.binary(max_size=300), cut=st.integers(0, 400))
def test_random_bytes_never_raise_and_resync_at_next_frame(junk: bytes, cut: int) -> None:
    data = junk + b"\r\n\r\n" + frame({"Event": "Hangup", "Uniqueid": "7.7"})
    cut %= len(data) + 1
    got, _ = _feed([data[:cut], data[cut:]])
    assert got[-1] == {"Event": "Hangup", "Uniqueid": "7.7"}


def test_repeated_headers_are_joined_in_wire_order() -> None:
    headers, bad = parse_frame(
        "Event: Newchannel\nChanVariable: FROM_DID=4930555100\nChanVariable: AMPUSER=101"
    )
    assert headers["ChanVariable"] == "FROM_DID=4930555100\nAMPUSER=101"
    assert not bad


def test_header_without_space_after_colon() -> None:
    headers, bad = parse_frame("Event: Hangup\nCause:16\nAccountCode: ")
    assert headers == {"Event": "Hangup", "Cause": "16", "AccountCode": ""}
    assert not bad


def test_frame_oversized_without_blank_line_resyncs(caplog: pytest.LogCaptureFixture) -> None:
    chunks = [b"Event: Newchannel\r\nX: "] + [b"y" * 40_000] * 30
    chunks += [b"\r\n\r\n", frame({"Event": "Hangup", "Uniqueid": "8"})]
    with caplog.at_level(logging.WARNING):
        got, stats = _feed(chunks)
    assert got == [{"Event": "Hangup", "Uniqueid": "8"}]
    assert stats.frames_oversized == 1


def test_corpus_stream_parses_exactly(corpus_dir: Path) -> None:
    """Every recorded lab event, framed as Asterisk sends it, comes out as the same dict."""
    recorded = [
        json.loads(line)
        for path in sorted((corpus_dir / "lab-pjsip").glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    data = b"Asterisk Call Manager/5.0.2\r\n" + b"".join(frame(e) for e in recorded)
    got, stats = _feed([data[i : i + 4096] for i in range(0, len(data), 4096)])
    assert got == [e for e in recorded if e["Event"] in DEFAULT_WANTED_EVENTS]
    assert stats.events_filtered == len(recorded) - len(got) > 0
    assert stats.frames_malformed == 0

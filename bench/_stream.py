"""Synthetic AMI load for the benches: recorded lab-pjsip calls, copied with fresh ids, interleaved.

Each copy of a recorded call gets its own Uniqueid/Linkedid/DestUniqueid/... values, its own
channel-name hex suffixes and its own bridge UUIDs, by rewriting every such token wherever it
appears (VarSet values included), so copies never collide in the tracker. FullyBooted frames are
dropped from copies: it is a connection event (the fake server sends one at login), not a call's.
Everything else (VarSet, Newexten, TestEvent, DeviceStateChange...) is kept.

The expected CTI events of each copy come from replaying its recording *alone* through
``CallTracker`` and rewriting the ids the same way; the bench compares what the daemon posts for
the interleaved stream against that.
"""

from __future__ import annotations

import os
import random
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cti_bridge.calls.trace import read_trace  # noqa: E402
from cti_bridge.calls.tracker import CallRules, CallTracker  # noqa: E402
from cti_bridge.events import CtiEvent  # noqa: E402

CORPUS = Path(os.environ.get("CTI_BRIDGE_CORPUS", ROOT.parent / "shared" / "corpus"))

# Bridge UUIDs, Uniqueid-like "epoch.seq" values, channel-name hex suffixes ("-0000001b").
TOKEN = re.compile(
    r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|\b\d{10}\.\d+\b"
    r"|(?<=-)[0-9a-f]{8}\b)"
)


def rewrite_token(tok: str, copy: int) -> str:
    """The id ``tok`` of the recording becomes in copy ``copy`` (>= 0; never the original)."""
    n = copy + 1
    if len(tok) == 36:
        return f"{tok[:24]}{n:012x}"
    if "." in tok:
        epoch, _, seq = tok.partition(".")
        # Recorded seqs are < 1000 (checked in load_traces): copies never collide.
        return f"{epoch}.{int(seq) + 1000 * n}"
    return f"{int(tok, 16) + 0x1000 * n:08x}"


def rewrite_value(value: str, copy: int) -> str:
    return TOKEN.sub(lambda m: rewrite_token(m.group(0), copy), value)


def rewrite_event(event: CtiEvent, copy: int) -> CtiEvent:
    return {
        k: [rewrite_value(x, copy) for x in v] if isinstance(v, list) else rewrite_value(v, copy)
        for k, v in event.items()
    }


@dataclass
class Trace:
    """One recorded call, prepared for cheap copying."""

    name: str
    formats: list[str]  # one str.format template per frame, token i -> {i}
    tokens: list[str]  # the distinct tokens, in order of first appearance
    expected: list[CtiEvent]  # replayed alone through the tracker, original ids
    hangup_trigger: int | None  # frame index whose feeding emitted the hangup event
    last_hangup: int | None  # frame index of the last Hangup frame

    def copy_frames(self, copy: int) -> list[str]:
        values = [rewrite_token(t, copy) for t in self.tokens]
        return [f.format(*values) for f in self.formats]


def wire(event: dict[str, str]) -> str:
    return "".join(f"{k}: {v}\r\n" for k, v in event.items()) + "\r\n"


def load_traces(rules: CallRules) -> list[Trace]:
    paths = sorted((CORPUS / "lab-pjsip").glob("*.jsonl"))
    if not paths:
        sys.exit(f"no corpus under {CORPUS}/lab-pjsip (set CTI_BRIDGE_CORPUS)")
    traces = []
    for path in paths:
        events = [e for e in read_trace(path) if e.get("Event") != "FullyBooted"]
        tracker = CallTracker(rules)
        expected: list[CtiEvent] = []
        trigger = None
        for i, ev in enumerate(events):
            for cti in tracker.feed(ev):
                expected.append(cti)
                if cti.get("event") == "hangup":
                    trigger = i
        expected.extend(tracker.flush())
        tokens: dict[str, int] = {}
        formats = []
        for ev in events:
            text = wire(ev)
            if not text.isascii():
                sys.exit(f"{path}: non-ASCII frame; byte offsets assume ASCII")
            parts = TOKEN.split(text.replace("{", "{{").replace("}", "}}"))
            out = []
            for j, part in enumerate(parts):
                if j % 2:
                    if "." in part and int(part.partition(".")[2]) >= 1000:
                        sys.exit(f"{path}: Uniqueid {part} has seq >= 1000")
                    out.append(f"{{{tokens.setdefault(part, len(tokens))}}}")
                else:
                    out.append(part)
            formats.append("".join(out))
        hangups = [i for i, e in enumerate(events) if e.get("Event") == "Hangup"]
        traces.append(
            Trace(
                path.stem,
                formats,
                list(tokens),
                expected,
                trigger,
                hangups[-1] if hangups else None,
            )
        )
    return traces


@dataclass
class CallCopy:
    """One call of the synthetic stream and where its frames ended up."""

    copy: int
    trace: Trace
    expected: list[CtiEvent] = field(default_factory=list)
    trigger_end: int = -1  # byte offset just past the frame that should emit the hangup
    last_hangup_end: int = -1  # byte offset just past its last Hangup frame
    end: int = -1  # byte offset just past its last frame


@dataclass
class Stream:
    data: bytes
    frames: int
    calls: list[CallCopy]
    by_call_id: dict[str, CallCopy]


def interleave(
    traces: list[Trace], n_calls: int, *, first_copy: int = 0, concurrent: int = 50, seed: int = 1
) -> Stream:
    """``n_calls`` copies (trace ``copy % len(traces)``), ``concurrent`` of them open at a time.

    Each step emits the next frame of a randomly chosen open call, so the calls overlap the way
    they would on a busy PBX while each call's own frames stay in order.
    """
    rnd = random.Random(seed)
    calls = [
        CallCopy(first_copy + i, traces[(first_copy + i) % len(traces)]) for i in range(n_calls)
    ]
    pending = iter(calls)
    slots: list[tuple[CallCopy, list[str], list[int]]] = []

    def open_next() -> None:
        call = next(pending, None)
        if call is not None:
            slots.append((call, call.trace.copy_frames(call.copy), [0]))

    for _ in range(concurrent):
        open_next()
    out: list[str] = []
    offset = 0
    frames = 0
    while slots:
        i = int(rnd.random() * len(slots))
        call, texts, pos = slots[i]
        k = pos[0]
        text = texts[k]
        out.append(text)
        offset += len(text)
        frames += 1
        if k == call.trace.hangup_trigger:
            call.trigger_end = offset
        if k == call.trace.last_hangup:
            call.last_hangup_end = offset
        pos[0] = k + 1
        if k + 1 == len(texts):
            call.end = offset
            slots[i] = slots[-1]
            slots.pop()
            open_next()
    by_id: dict[str, CallCopy] = {}
    for call in calls:
        call.expected = [rewrite_event(e, call.copy) for e in call.trace.expected]
        if call.expected:
            by_id[str(call.expected[0]["callId"])] = call
    return Stream("".join(out).encode("ascii"), frames, calls, by_id)


def chunks(data: bytes, size: int = 65536) -> Iterator[tuple[int, bytes]]:
    """(offset, piece) of at most ``size`` bytes, each ending at the end of a frame if one does.

    Frame-aligned so that what the fake AMI writes between two pieces (the answer to the
    daemon's keepalive Ping) lands between frames, not inside one.
    """
    view = memoryview(data)
    start = 0
    while start < len(data):
        cut = data.rfind(b"\r\n\r\n", start, start + size)
        end = cut + 4 if cut >= 0 else min(start + size, len(data))
        yield start, view[start:end].tobytes()
        start = end

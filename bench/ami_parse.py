"""AMI parsing throughput: lean protocol vs. a minimal frame parser vs. panoramisk 1.4.

Builds a wire stream from the lab-pjsip corpus (every event kept, noise included: VarSet,
TestEvent, Newexten, DeviceStateChange...), repeated with rewritten ids to >= 200,000 events,
then feeds it in random 4-64 KiB chunks to:
  (a) cti_bridge.ami.protocol.LeanAMIProtocol.data_received (default wanted set),
  (b) a minimal parser (incremental split on CRLF CRLF + one dict per frame): the floor,
  (c) panoramisk 1.4's AMIProtocol.data_received (Message per frame, no callbacks),
  (d) end to end: the fake AMI server streams the bytes over loopback TCP to an AmiClient.

Usage: .venv/bin/python bench/ami_parse.py [--events N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from panoramisk.ami_protocol import AMIProtocol  # noqa: E402

from cti_bridge.ami.client import AmiClient  # noqa: E402
from cti_bridge.ami.protocol import LeanAMIProtocol, ProtoStats  # noqa: E402
from cti_bridge.config import AmiConfig, Secret  # noqa: E402
from tests.support.fake_ami import FakeAmi, frame  # noqa: E402

CORPUS = Path(os.environ.get("CTI_BRIDGE_CORPUS", ROOT.parent / "shared" / "corpus"))


def load_events() -> list[dict[str, str]]:
    events = []
    for path in sorted((CORPUS / "lab-pjsip").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                events.append(json.loads(line))
    return events


def _rewrite(value: str, rep: int) -> str:
    epoch, dot, seq = value.rpartition(".")
    if dot and seq.isdigit():
        return f"{epoch}.{int(seq) + rep * 1000}"
    return value


def build_stream(min_events: int) -> tuple[bytes, int]:
    base = load_events()
    if not base:
        sys.exit(f"no corpus events under {CORPUS}/lab-pjsip")
    id_keys = {k for e in base for k in e if "uniqueid" in k.lower() or "linkedid" in k.lower()}
    parts = [b"Asterisk Call Manager/5.0.2\r\n"]
    count = 0
    rep = 0
    while count < min_events:
        for ev in base:
            if rep:
                ev = {k: (_rewrite(v, rep) if k in id_keys else v) for k, v in ev.items()}
            parts.append(frame(ev))
            count += 1
        rep += 1
    return b"".join(parts), count


def chunked(data: bytes, seed: int = 1) -> list[bytes]:
    rnd = random.Random(seed)
    out, i = [], 0
    while i < len(data):
        n = rnd.randint(4096, 65536)
        out.append(data[i : i + n])
        i += n
    return out


def run_lean(chunks: list[bytes]) -> int:
    got: list[dict[str, str]] = []
    stats = ProtoStats()
    proto = LeanAMIProtocol(sink=got.append, stats=stats)
    for c in chunks:
        proto.data_received(c)
    return stats.events_read + stats.events_filtered


def run_minimal(chunks: list[bytes]) -> int:
    import codecs

    dec = codecs.getincrementaldecoder("utf-8")("replace")
    buf = ""
    n = 0
    sink: list[dict[str, str]] = []
    for c in chunks:
        frames = (buf + dec.decode(c)).split("\r\n\r\n")
        buf = frames.pop()
        for f in frames:
            sink.append(dict(line.split(": ", 1) for line in f.split("\r\n") if ": " in line))
            n += 1
    return n


class _Factory:
    save_stream = None
    n = 0

    def dispatch(self, message: Any) -> None:
        self.n += 1


def run_panoramisk(chunks: list[bytes]) -> int:
    proto = AMIProtocol()
    proto.connection_made(None)
    factory = _Factory()
    proto.factory = factory
    proto.encoding = "utf8"
    for c in chunks:
        proto.data_received(c)
    return factory.n


def best(fn: Callable[[list[bytes]], int], chunks: list[bytes], rounds: int) -> tuple[float, int]:
    times = []
    n = 0
    for _ in range(rounds):
        # CPU time: wall time is too noisy when other jobs share the machine.
        t0 = time.process_time()
        n = fn(chunks)
        times.append(time.process_time() - t0)
    return min(times), n


async def run_tcp(data: bytes, total: int) -> float:
    server = await FakeAmi().start()
    seen = 0

    def on_event(_ev: dict[str, str]) -> None:
        nonlocal seen
        seen += 1

    cfg = AmiConfig(
        port=server.port, username=server.username, secret=Secret(server.secret),
        ping_interval=60, ping_timeout=30,
    )  # fmt: skip
    client = AmiClient(cfg, on_event)
    await client.start()
    assert await client.wait_logged_in(5)
    await asyncio.sleep(0.2)
    base = client.events_read + client.events_filtered
    # Strip the banner: the connection already has one.
    payload = data[data.index(b"\r\n") + 2 :]
    t0 = time.process_time()
    await server.stream(payload)
    while client.events_read + client.events_filtered - base < total:
        await asyncio.sleep(0.001)
    elapsed = time.process_time() - t0
    await client.stop()
    await server.stop()
    return elapsed


def main() -> None:
    logging.getLogger("cti_bridge").setLevel(logging.ERROR)  # storm warnings are expected here
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; figures are CPU time")
    data, total = build_stream(args.events)
    chunks = chunked(data)
    print(
        f"stream: {total} events, {len(data) / 1e6:.1f} MB, {len(chunks)} chunks of 4-64 KiB, "
        f"Python {sys.version.split()[0]}"
    )
    rows = [
        ("(a) lean protocol (cti_bridge.ami.protocol)", run_lean),
        ("(b) minimal split+dict parser (floor)", run_minimal),
        ("(c) panoramisk 1.4 AMIProtocol", run_panoramisk),
    ]
    for label, fn in rows:
        secs, n = best(fn, chunks, args.rounds)
        print(f"{label:45s} {n / secs:>10,.0f} events/s  ({secs * 1000:.0f} ms, {n} frames)")
    secs = asyncio.run(run_tcp(data, total))
    print(
        f"{'(d) loopback TCP, AmiClient + fake server':45s} {total / secs:>10,.0f} events/s"
        "  (CPU of both ends, one process)"
    )


if __name__ == "__main__":
    main()

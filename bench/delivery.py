"""Delivery benchmark: prints figures, asserts nothing.

(a) drain rate of a 100,000-event backlog left by an outage (newCall/answer/hangup of many
    calls), target >= 2,000 events/s;
(b) latency from ``Delivery.submit`` to the POST arriving at the server while healthy, at a
    steady 200 events/s, target p99 < 5 ms.

The server is the fake Zammad (cti_bridge/demo/zammad.py) in its own process, so its CPU does
not share the bridge's GIL; it stamps each request's arrival with time.time() (same host clock).

    .venv/bin/python bench/delivery.py [--events 100000] [--rate 200] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cti_bridge.config import Secret, ZammadConfig  # noqa: E402
from cti_bridge.demo.zammad import call_events  # noqa: E402
from cti_bridge.outbox.store import Outbox  # noqa: E402
from cti_bridge.zammad import Delivery, ZammadClient  # noqa: E402

TOKEN = "bench-token"


class Server:
    """An HTTP responder in a child process: the fake Zammad, or a minimal asyncio responder.

    Either way the child stamps each request's arrival with time.time() and hands the stamps
    back as JSON lines, (fake: live on stdout; responder: when terminated).
    """

    def __init__(self, kind: str, quiet: bool) -> None:
        if kind == "fake":
            args = ["-m", "cti_bridge.demo.zammad", "--token", TOKEN]
            args += ["--quiet"] if quiet else []
        else:
            args = [str(Path(__file__).resolve()), "--serve"]
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout is not None
        first = json.loads(self.proc.stdout.readline())
        self.url = f"{first['listening']}/api/v1/cti/{TOKEN}"
        self.lines: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def close(self) -> list[dict[str, Any]]:
        self.proc.terminate()
        self.proc.wait(10)
        self._reader.join(10)
        return self.lines


def serve() -> None:
    """The minimal responder: HTTP/1.1 keep-alive, answers every POST 200 {} at once."""
    arrivals: list[tuple[float, bytes]] = []

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await r.readuntil(b"\r\n\r\n")
                t = time.time()
                n = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        n = int(line[15:])
                body = await r.readexactly(n)
                w.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 2\r\n\r\n{}"
                )
                arrivals.append((t, body))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            w.close()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"listening": f"http://127.0.0.1:{port}"}), flush=True)
        await stop.wait()
        for t, body in arrivals:
            fields = parse_qsl(body.decode())
            print(json.dumps({"at": t, "fields": fields}))
        sys.stdout.flush()

    asyncio.run(main())


def backlog(n_events: int) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    i = 0
    while len(events) < n_events:
        events += call_events(f"bk{i}", answered=i % 4 != 0)
        i += 1
    return events[:n_events]


async def drain(n_events: int, concurrency: int, kind: str) -> None:
    server = Server(kind, quiet=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "o.sqlite3"
            cfg = ZammadConfig(url=Secret(server.url), concurrency=concurrency)
            outbox = Outbox(path, background_checkpoint=True)
            t0 = time.perf_counter()
            events = backlog(n_events)
            for k in range(0, len(events), 5000):
                outbox.put_many(events[k : k + 5000])
            t_fill = time.perf_counter() - t0
            client = ZammadClient(cfg)
            d = Delivery(outbox, client, cfg)
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            await d.start()
            while d.posted < n_events:
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            status = d.status()
            await d.stop()
            await client.aclose()
            outbox.close()
        rate = n_events / elapsed
        print(f"(a) backlog of {n_events} events ({concurrency} concurrent posts):")
        print(f"    enqueue into outbox: {n_events / t_fill:,.0f} events/s")
        print(
            f"    drained in {elapsed:.1f} s = {rate:,.0f} events/s "
            f"(target >= 2,000: {'MET' if rate >= 2000 else 'MISSED'}); "
            f"bridge CPU {cpu / elapsed:.0%} of one core"
        )
        print(
            f"    status after: pending={status['pending']} dead={status['dead']} "
            f"retries={status['retries']}"
        )
    finally:
        server.close()


async def latency(rate: float, seconds: float, kind: str) -> None:
    server = Server(kind, quiet=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = ZammadConfig(url=Secret(server.url))
            outbox = Outbox(Path(tmp) / "o.sqlite3", background_checkpoint=True)
            client = ZammadClient(cfg)
            d = Delivery(outbox, client, cfg)
            await d.start()
            # Warm up: open the keep-alive connections first; a daemon does that once in its life.
            warm = [dict(e, callId=f"warm-{e['callId']}") for e in backlog(300)]
            for k in range(0, len(warm), 10):
                d.submit_many(warm[k : k + 10])
                await asyncio.sleep(0.01)
            while d.posted < len(warm):
                await asyncio.sleep(0.01)
            submitted: dict[tuple[str, str], float] = {}
            n = int(rate * seconds)
            events = backlog(n)
            t_start = time.perf_counter()
            for k, ev in enumerate(events):
                due = t_start + k / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                submitted[(str(ev["callId"]), str(ev["event"]))] = time.time()
                d.submit(ev)
            while d.posted < n + len(warm):
                await asyncio.sleep(0.05)
            await d.stop()
            await client.aclose()
            outbox.close()
        deadline = time.time() + 5
        while server.kind == "fake" and len(server.lines) < n and time.time() < deadline:
            await asyncio.sleep(0.05)
        lat = []
        for line in server.close():
            fields = dict(line["fields"])  # type: ignore[call-overload]
            key = (fields.get("callId"), fields.get("event"))
            if key in submitted:
                lat.append((float(line["at"]) - submitted[key]) * 1000)  # type: ignore[arg-type]
        lat.sort()
        p50 = statistics.median(lat)
        p99 = lat[int(len(lat) * 0.99) - 1]
        print(
            f"(b) submit -> POST arrival at {rate:.0f} events/s for {seconds:.0f} s "
            f"({len(lat)} events):"
        )
        print(
            f"    p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {lat[-1]:.2f} ms "
            f"(target p99 < 5 ms: {'MET' if p99 < 5 else 'MISSED'})"
        )
    finally:
        server.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--only", choices=("a", "b"))
    ap.add_argument("--server", choices=("responder", "fake"), default="responder")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve()
        return
    print(
        f"server: {args.server} (separate process); load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs"
    )
    if args.only in (None, "a"):
        asyncio.run(drain(args.events, args.concurrency, args.server))
    if args.only in (None, "b"):
        asyncio.run(latency(args.rate, args.seconds, args.server))


if __name__ == "__main__":
    main()

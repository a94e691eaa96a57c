"""End-to-end benchmark of the whole daemon: AMI read -> tracker -> outbox -> POST.

A fake AMI server (tests/support/fake_ami.py) streams recorded lab-pjsip calls, copied with fresh
ids and interleaved 50 at a time with all dialplan noise kept (see bench/_stream.py), to
``cti-bridge run`` started as a subprocess (its own RSS and CPU); a minimal asyncio HTTP
responder on loopback plays Zammad (``{}`` 200), records each POST's arrival time and body.

Phases (each against a fresh daemon and outbox):
  full    the whole stream as fast as the daemon reads (a burst of --calls calls):
          - intake: events/s from the first byte written until the daemon has read every frame
            (its status socket: AMI events read + filtered) AND committed every CTI event the
            stream holds (the outbox's AUTOINCREMENT counter, read-only from here), while posting
            runs at the same time;
          - end to end: events/s from the first byte written to the last hangup POST received;
          - posting: POSTs/s from the first POST to the last, daemon CPU per POST (all of it,
            and what it spent after the intake ended, when it only posts);
          - reading first: the longest a write of the fake AMI waited in ``drain()`` for the
            daemon to read (Asterisk drops a client that blocks a write for ``writetimeout``,
            5 s in conf/asterisk/manager_cti.conf);
          latency from each call's last Hangup frame written to its hangup POST received; every
          post checked against a replay of the call alone.
  paced   the same at a steady --rate calls/s (default 100): the latency that users see.
  soak    --soak calls (default 20,000) in four parts at full speed: RSS after each part.
The same bytes as ``full`` are also read over loopback by three comparison clients, each a
subprocess: a minimal frame parser (socket read, split on CRLF CRLF, one dict per frame: the
floor), panoramisk 1.4's AMIProtocol parser alone, and cacofonisk 0.7.10's EventHandler fed by
that parser (it tracks calls but posts nothing).

Usage: .venv/bin/python bench/e2e.py [--calls N] [--quick] [--profile]
Loopback only; stops by itself (a few minutes; --quick well under one).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stream import CallCopy, Stream, chunks, interleave, load_traces  # noqa: E402

from cti_bridge.calls.tracker import CallRules  # noqa: E402
from cti_bridge.config import load_config  # noqa: E402
from cti_bridge.events import CtiEvent  # noqa: E402
from cti_bridge.service.status import fetch_status  # noqa: E402
from tests.support.fake_ami import FakeAmi  # noqa: E402

TOKEN = "benchtoken"
PATH = f"/api/v1/cti/{TOKEN}"
REQUIRED = ("event", "direction", "from", "to", "callId")
STALL = 20.0  # seconds without a new POST before a phase gives up waiting
CLK_TCK = os.sysconf("SC_CLK_TCK")
WRITE_TIMEOUT = 5.0  # Asterisk's writetimeout in conf/asterisk/manager_cti.conf
POLL = 0.002  # seconds between looks at the outbox while waiting for the intake to end
PY = str(ROOT / ".venv" / "bin" / "python")


# ---------------------------------------------------------------------------- fake Zammad


@dataclass
class Post:
    at: float
    path: str
    ctype: str
    body: bytes


class Zammad:
    """Counts POSTs, keeps their bodies and arrival times, answers ``{}`` 200 (keep-alive)."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.hangups = 0
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self.changed = asyncio.Event()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = 0
                ctype = ""
                for line in lines[1:]:
                    key, _, value = line.partition(":")
                    k = key.strip().lower()
                    if k == "content-length":
                        length = int(value)
                    elif k == "content-type":
                        ctype = value.strip()
                body = await reader.readexactly(length) if length else b""
                at = time.monotonic()
                parts = lines[0].split(" ")
                self.posts.append(Post(at, parts[1] if len(parts) > 1 else "", ctype, body))
                if b"event=hangup" in body:
                    self.hangups += 1
                self.changed.set()
                writer.write(reply)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def wait_hangups(self, count: int) -> bool:
        """Until ``count`` hangup POSTs arrived; False after STALL seconds with no new POST."""
        while self.hangups < count:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), STALL)
            except TimeoutError:
                return False
        return True


# ---------------------------------------------------------------------------- the daemon


def config_text(where: Path, ami_port: int, zammad_port: int) -> str:
    return f"""
[ami]
host = "127.0.0.1"
port = {ami_port}
username = "zammad"
secret = "s3cret"
ping_interval = 10.0
ping_timeout = 10.0
[zammad]
url = "http://127.0.0.1:{zammad_port}{PATH}"
timeout = 5.0
[pbx]
trunk_endpoints = ["carrier"]
[users]
"101" = "Alice Agent"
[agi]
listen = "127.0.0.1:0"
[outbox]
path = "{where / "outbox.sqlite3"}"
[status]
socket = "{where / "status.sock"}"
"""


class DaemonProc:
    """``cti-bridge run`` in a subprocess, with a config pointing at the two fakes."""

    extra_path = ""  # --daemon-path: prepended to the daemon's PYTHONPATH (A/B of a fix)

    def __init__(self, tmp: Path, ami_port: int, zammad_port: int, profile: Path | None) -> None:
        self.dir = Path(tempfile.mkdtemp(dir=tmp))
        self.config = self.dir / "cti-bridge.toml"
        self.config.write_text(config_text(self.dir, ami_port, zammad_port))
        self.config.chmod(0o600)
        self.log = self.dir / "daemon.log"
        pre = [PY, "-m", "cProfile", "-o", str(profile), "-m"] if profile else [PY, "-m"]
        cmd = [*pre, "cti_bridge", "run", "--config", str(self.config), "--log-level", "warning"]
        env = dict(os.environ)
        if self.extra_path:
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [self.extra_path, env.get("PYTHONPATH")])
            )
        # ``python -m`` puts the working directory first on sys.path, ahead of PYTHONPATH.
        cwd = self.extra_path or ROOT
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=self.log.open("wb"), cwd=cwd, env=env
        )
        self._outbox: sqlite3.Connection | None = None

    def _status(self) -> dict[str, str]:
        out = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            out[key] = value.strip()
        return out

    def rss_mb(self) -> float:
        return int(self._status()["VmRSS"].split()[0]) / 1024

    def peak_mb(self) -> float:
        return int(self._status()["VmHWM"].split()[0]) / 1024

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def frames_read(self) -> int:
        """AMI frames the daemon has read and parsed so far (status socket; blocking)."""
        ami = fetch_status(str(self.dir / "status.sock")).get("ami", {})
        return int(ami.get("events_read") or 0) + int(ami.get("events_filtered") or 0)

    def committed(self) -> int:
        """CTI events committed to the outbox so far: its AUTOINCREMENT counter, never reused.

        Read here, read-only, so that the daemon spends nothing on it (its status document
        counts the pending rows, a query per look).
        """
        if self._outbox is None:
            uri = f"file:{self.dir / 'outbox.sqlite3'}?mode=ro"
            self._outbox = sqlite3.connect(uri, uri=True, isolation_level=None)
        # fetchall: the statement runs to its end, so no read transaction stays open.
        rows = self._outbox.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'pending'"
        ).fetchall()
        return int(rows[0][0]) if rows else 0

    async def tracker_state(self) -> str:
        """Calls and channels the daemon still tracks (status socket): a leak shows here.

        Asked again for up to 2 s while calls remain: an internal call posts nothing, so the
        bench does not wait for it, and its last frames may still be on their way.
        """
        for _ in range(10):
            try:
                doc = await asyncio.to_thread(fetch_status, str(self.dir / "status.sock"))
            except Exception as exc:  # a bench: report, do not stop
                return f"status: {type(exc).__name__}"
            calls = doc.get("calls", {})
            if not calls.get("active"):
                break
            await asyncio.sleep(0.2)
        return f"{calls.get('active')} calls/{calls.get('channels')} channels tracked"

    async def stop(self) -> None:
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        for _ in range(300):
            if self.proc.poll() is not None:
                return
            await asyncio.sleep(0.05)
        self.proc.kill()
        self.proc.wait()

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]


# ---------------------------------------------------------------------------- streaming


@dataclass
class Sent:
    """When each chunk of a stream left the server: byte offset just past it -> time."""

    ends: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    longest_wait: float = 0.0  # the longest drain(): the reader left the socket full that long

    def time_of(self, offset: int) -> float:
        """Write time of the chunk holding the byte just before ``offset``."""
        return self.times[bisect.bisect_left(self.ends, offset)]


async def stream_to(
    writer: asyncio.StreamWriter,
    data: bytes,
    lock: asyncio.Lock | None = None,
    *,
    duration: float = 0.0,
    size: int = 65536,
) -> Sent:
    """Write ``data`` as fast as the reader takes it, or spread evenly over ``duration`` s."""
    sent = Sent()
    total = len(data)
    t0 = time.monotonic()
    for start, piece in chunks(data, size):
        if duration:
            due = t0 + duration * start / total
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        if lock is None:
            writer.write(piece)
            sent.times.append(time.monotonic())
        else:
            async with lock:
                writer.write(piece)
                sent.times.append(time.monotonic())
        sent.ends.append(start + len(piece))
        t = time.monotonic()
        await writer.drain()
        sent.longest_wait = max(sent.longest_wait, time.monotonic() - t)
    return sent


# ---------------------------------------------------------------------------- checking posts


@dataclass
class Check:
    posts: int = 0
    expected: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong: int = 0  # right call, wrong content or order
    malformed: int = 0
    example: str = ""
    kinds: Counter[str] = field(default_factory=Counter)  # what the wrong posts got wrong
    latencies: list[float] = field(default_factory=list)
    last_post: float = 0.0

    def bad(self) -> int:
        return self.lost + self.duplicated + self.wrong + self.malformed


def parse_post(post: Post) -> CtiEvent | None:
    if post.path != PATH or not post.ctype.startswith("application/x-www-form-urlencoded"):
        return None
    try:
        form = parse_qs(post.body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return None
    event: CtiEvent = {}
    for key, values in form.items():
        if key.endswith("[]"):
            event[key] = values
        elif len(values) == 1:
            event[key] = values[0]
        else:
            return None
    if any(not event.get(k) for k in REQUIRED):
        return None
    return event


def check_posts(posts: list[Post], streams: list[tuple[Stream, Sent]]) -> Check:
    res = Check(posts=len(posts))
    owner: dict[str, tuple[CallCopy, Sent]] = {}
    for stream, sent in streams:
        for cid, call in stream.by_call_id.items():
            owner[cid] = (call, sent)
        res.expected += sum(len(c.expected) for c in stream.calls)
    got: dict[str, list[tuple[float, CtiEvent]]] = {}
    for post in posts:
        event = parse_post(post)
        if event is None or str(event["callId"]) not in owner:
            res.malformed += 1
            res.example = (
                res.example or f"malformed: {post.path.replace(TOKEN, '***')} {post.body[:200]!r}"
            )
            continue
        got.setdefault(str(event["callId"]), []).append((post.at, event))
        res.last_post = max(res.last_post, post.at)
    for cid, (call, sent) in owner.items():
        have = got.get(cid, [])
        events = [e for _, e in have]
        want = call.expected
        res.lost += max(0, len(want) - len(events))
        res.duplicated += max(0, len(events) - len(want))
        for w, h in zip(want, events, strict=False):
            if w != h:
                res.wrong += 1
                keys = sorted(k for k in {*w, *h} if w.get(k) != h.get(k))
                res.kinds[f"{w.get('event')} differs in {', '.join(keys)}"] += 1
                res.example = res.example or f"call {cid}: expected {w}, got {h}"
        for at, e in have:
            if e.get("event") == "hangup":
                res.latencies.append(at - sent.time_of(call.last_hangup_end))
    return res


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


# ---------------------------------------------------------------------------- phases


@dataclass
class PhaseResult:
    frames: int = 0
    calls: int = 0
    wall: float = 0.0
    intake: float = 0.0  # first byte written -> every frame read, every CTI event committed
    intake_cpu: float = 0.0  # daemon CPU over the intake
    intake_posts: int = 0  # POSTs received by the end of the intake
    cpu: float = 0.0
    first_post: float = 0.0
    longest_wait: float = 0.0  # the longest drain() of the fake AMI: reading stalled that long
    bench_cpu: float = 0.0  # this process (fake AMI + fake Zammad) over the same span
    check: Check = field(default_factory=Check)
    rss: list[tuple[int, float, str]] = field(default_factory=list)  # calls, MB, tracker state
    peak: float = 0.0
    ok: bool = True


@dataclass
class Intake:
    end: float  # when the daemon had read every frame and committed every CTI event
    cpu: float  # its CPU seconds then
    posts: int  # POSTs received by then


async def watch_intake(daemon: DaemonProc, zammad: Zammad, frames: int, events: int) -> Intake:
    """Until the daemon has read ``frames`` AMI frames in all and committed ``events`` events.

    The outbox is looked at every POLL s; once it holds every event, the status socket confirms
    that the frames behind the last of them (a few KB of noise, as a rule in the same read) are
    read too, else it is asked again and the intake ends at its answer.
    """
    while daemon.committed() < events:
        await asyncio.sleep(POLL)
    end, cpu, posts = time.monotonic(), daemon.cpu(), len(zammad.posts)
    while await asyncio.to_thread(daemon.frames_read) < frames:
        await asyncio.sleep(POLL)
        end, cpu, posts = time.monotonic(), daemon.cpu(), len(zammad.posts)
    return Intake(end, cpu, posts)


async def run_daemon_phase(
    tmp: Path,
    parts: list[Stream],
    *,
    duration_per_part: float = 0.0,
    profile: Path | None = None,
) -> PhaseResult:
    """Start a daemon, stream ``parts`` one after another, wait for their hangups, stop it."""
    zammad = Zammad()
    await zammad.start()
    ami = await FakeAmi().start()
    daemon = DaemonProc(tmp, ami.port, zammad.port, profile)
    res = PhaseResult()
    try:
        await ami.wait_login(1, timeout=20)
        await ami.wait_for(
            lambda: any(a.get("action", "").lower() == "coreshowchannels" for a in ami.actions), 10
        )
        await asyncio.sleep(0.5)
        client = ami.logged_in_clients[0]
        res.rss.append((0, daemon.rss_mb(), await daemon.tracker_state()))
        frames_target = await asyncio.to_thread(daemon.frames_read)
        events_target = daemon.committed()
        cpu0 = daemon.cpu()
        bench_cpu0 = time.process_time()
        sents = []
        want_hangups = 0
        first = 0.0
        done_calls = 0
        for stream in parts:
            want_hangups += sum(1 for c in stream.calls if c.trace.hangup_trigger is not None)
            frames_target += stream.frames
            events_target += sum(len(c.expected) for c in stream.calls)
            watcher = asyncio.create_task(
                watch_intake(daemon, zammad, frames_target, events_target)
            )
            sent = await stream_to(
                client.writer,
                stream.data,
                client.lock,
                duration=duration_per_part,
                size=4096 if duration_per_part else 65536,
            )
            first = first or sent.times[0]
            sents.append((stream, sent))
            res.longest_wait = max(res.longest_wait, sent.longest_wait)
            if not await zammad.wait_hangups(want_hangups):
                res.ok = False
                watcher.cancel()
                print(f"  !! stalled: {zammad.hangups}/{want_hangups} hangups, {STALL:.0f} s idle")
                break
            try:
                intake = await asyncio.wait_for(watcher, STALL)
            except TimeoutError:
                res.ok = False
                print(f"  !! intake never ended: {daemon.committed()}/{events_target} committed")
                break
            res.intake += intake.end - sent.times[0]
            res.intake_cpu = intake.cpu - cpu0
            res.intake_posts = intake.posts
            done_calls += len(stream.calls)
            res.frames += stream.frames
            res.rss.append((done_calls, daemon.rss_mb(), await daemon.tracker_state()))
        res.cpu = daemon.cpu() - cpu0
        res.bench_cpu = time.process_time() - bench_cpu0
        res.calls = done_calls
        res.peak = daemon.peak_mb()
        await asyncio.sleep(0.3)  # anything after the last expected hangup is a duplicate
        res.check = check_posts(list(zammad.posts), sents)
        res.wall = res.check.last_post - first
        res.first_post = min((p.at for p in zammad.posts), default=0.0)
    finally:
        await daemon.stop()
        await ami.stop()
        await zammad.stop()
    extra = len(zammad.posts) - res.check.posts
    if extra:
        res.check.duplicated += extra
    if daemon.proc.returncode not in (0, None):
        print(f"  !! daemon exit {daemon.proc.returncode}:\n{daemon.log_tail()}")
    return res


# ---------------------------------------------------------------------------- comparison clients


def client_main(mode: str, port: int, frames: int) -> None:
    """A comparison client (subprocess): read ``frames`` frames, print when done and CPU used."""
    import socket

    recv_size = 262144
    sock = socket.create_connection(("127.0.0.1", port))
    n = 0
    if mode == "minimal":
        import codecs

        dec = codecs.getincrementaldecoder("utf-8")("replace")
        buf = ""
        sink: list[dict[str, str]] = []
        while n < frames:
            data = sock.recv(recv_size)
            if not data:
                break
            parts = (buf + dec.decode(data)).split("\r\n\r\n")
            buf = parts.pop()
            for f in parts:
                d = {}
                for line in f.split("\r\n"):
                    k, sep, v = line.partition(": ")
                    if sep:
                        d[k] = v
                sink.append(d)
                n += 1
            sink.clear()
    else:
        import logging

        from panoramisk.ami_protocol import AMIProtocol

        logging.disable(logging.CRITICAL)  # cacofonisk warns about channels it never saw
        handler = None
        if mode == "cacofonisk":
            from cacofonisk.handlers import EventHandler
            from cacofonisk.reporters import BaseReporter

            handler = EventHandler(BaseReporter())

        class Factory:
            save_stream = None
            count = 0

            def dispatch(self, message: Any) -> None:
                self.count += 1
                if handler is not None:
                    handler.on_event(message)

        proto = AMIProtocol()
        proto.connection_made(None)
        factory = Factory()
        proto.factory = factory
        proto.encoding = "utf8"
        while factory.count < frames:
            data = sock.recv(recv_size)
            if not data:
                break
            proto.data_received(data)
        n = factory.count
    end = time.monotonic()
    print(json.dumps({"end": end, "frames": n, "cpu": time.process_time()}))


async def run_client(mode: str, stream: Stream) -> tuple[float, float, int]:
    """Serve ``stream`` to one comparison client; (wall s from first byte, client CPU s, frames)."""
    accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

    async def on_accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if not accepted.done():
            accepted.set_result(w)

    server = await asyncio.start_server(on_accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        PY, __file__, "--client", mode, "--port", str(port), "--frames", str(stream.frames),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    writer = await asyncio.wait_for(accepted, 30)
    await asyncio.sleep(0.2)  # let the client start reading
    sent = await stream_to(writer, stream.data)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    writer.close()
    server.close()
    doc = json.loads(out)
    return doc["end"] - sent.times[0], doc["cpu"], doc["frames"]


# ---------------------------------------------------------------------------- report


def fmt_rate(n: float) -> str:
    return f"{n:>10,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--calls", type=int, default=4000, help="calls in the full-speed stream")
    ap.add_argument("--paced-calls", type=int, default=1500, help="calls in the paced stream")
    ap.add_argument("--rate", type=float, default=100.0, help="calls/s of the paced stream")
    ap.add_argument("--soak", type=int, default=20000, help="calls in the soak (0: skip)")
    ap.add_argument("--concurrent", type=int, default=50, help="calls open at a time")
    ap.add_argument("--quick", action="store_true", help="small run (~1 min): 800/300/2000 calls")
    ap.add_argument(
        "--repeat", type=int, help="full-speed runs of daemon and clients, best kept (3; quick: 1)"
    )
    ap.add_argument("--profile", type=Path, help="cProfile the full-speed daemon into this file")
    ap.add_argument("--daemon-path", default="", help="prepend to the daemon's PYTHONPATH")
    ap.add_argument("--only", choices=["full", "paced", "soak", "clients"], action="append")
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        client_main(args.client, args.port, args.frames)
        return
    if args.quick:
        args.calls, args.paced_calls, args.soak = min(args.calls, 800), 300, 2000
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    asyncio.run(bench(args))


async def bench(args: argparse.Namespace) -> None:
    only = set(args.only or ["full", "paced", "soak", "clients"])
    DaemonProc.extra_path = args.daemon_path
    tmp = Path(tempfile.mkdtemp(prefix="cti-e2e-"))
    # The rules the daemon derives from the bench config: the expectations use the same.
    rules = _rules_for(tmp)
    traces = load_traces(rules)
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}; corpus {len(traces)} lab-pjsip recordings; "
        f"{args.concurrent} calls interleaved"
    )
    t0 = time.monotonic()
    full = interleave(traces, args.calls, concurrent=args.concurrent)
    print(
        f"full stream: {args.calls} calls, {full.frames:,} AMI frames, "
        f"{len(full.data) / 1e6:.1f} MB"
        f" (built in {time.monotonic() - t0:.1f} s)"
    )
    rows: list[tuple[str, str, str, str]] = []
    res_full = None
    full_runs: list[PhaseResult] = []
    client_runs: dict[str, list[tuple[float, float, int]]] = {}
    labels = {
        "minimal": "minimal frame parser (floor)",
        "panoramisk": "panoramisk 1.4 AMIProtocol parser alone",
        "cacofonisk": "cacofonisk 0.7.10 (panoramisk parser + EventHandler)",
    }
    # Runs alternate (daemon, then each client) so that a slow spell of the machine hits all of
    # them alike; each figure is the best (shortest wall) of its runs.
    for run in range(args.repeat):
        tag = f" (run {run + 1} of {args.repeat})" if args.repeat > 1 else ""
        if "full" in only:
            print(f"running: daemon at full speed{tag} ...", flush=True)
            full_runs.append(
                await run_daemon_phase(tmp, [full], profile=args.profile if not run else None)
            )
        if "clients" in only:
            for mode in labels:
                print(f"running: {mode} client{tag} ...", flush=True)
                client_runs.setdefault(mode, []).append(await run_client(mode, full))
    res_intake = None
    if full_runs:
        res_full = min(full_runs, key=lambda r: r.wall)
        res_intake = min(full_runs, key=lambda r: r.intake or float("inf"))
        rows.append(
            _row(
                "cti-bridge AMI intake (read + committed; posting too)",
                res_intake.frames,
                res_intake.intake,
                res_intake.intake_cpu,
                _spread([r.frames / r.intake for r in full_runs if r.intake]),
            )
        )
        rows.append(
            _row(
                "cti-bridge end to end (first byte -> last hangup POST)",
                res_full.frames,
                res_full.wall,
                res_full.cpu,
                _spread([r.frames / r.wall for r in full_runs if r.wall]),
            )
        )
        rows.append(
            _row(
                "  the bench's fake AMI + fake Zammad, same span",
                res_full.frames,
                res_full.wall,
                res_full.bench_cpu,
                "(CPU near wall: the bench is the limit)"
                if res_full.bench_cpu > 0.8 * res_full.wall
                else "",
            )
        )
    clients: dict[str, float] = {}
    for mode, runs in client_runs.items():
        wall, cpu, n = min(runs)
        clients[mode] = n / wall
        note = "" if n == full.frames else f"ONLY {n} frames"
        rows.append(_row(labels[mode], n, wall, cpu, note or _spread([m / w for w, _, m in runs])))
    res_paced = None
    if "paced" in only:
        paced = interleave(
            traces, args.paced_calls, first_copy=args.calls, concurrent=args.concurrent
        )
        duration = args.paced_calls / args.rate
        print(
            f"running: daemon paced at {args.rate:.0f} calls/s for {duration:.0f} s ...", flush=True
        )
        res_paced = await run_daemon_phase(tmp, [paced], duration_per_part=duration)
    res_soak = None
    if "soak" in only and args.soak:
        part = max(1, args.soak // 4)
        print(f"running: soak, {args.soak} calls in 4 parts at full speed ...", flush=True)
        parts = [
            interleave(
                traces, part, first_copy=10_000_000 + i * part, concurrent=args.concurrent, seed=i
            )
            for i in range(4)
        ]
        res_soak = await run_daemon_phase(tmp, parts)

    print()
    print(
        f"{'throughput, same byte stream over loopback':56s} {'events/s':>10s} {'wall s':>7s} "
        f"{'CPU s':>7s} {'ev/CPU-s':>10s}"
    )
    for r in rows:
        print(*r)
    if full_runs and {"cacofonisk", "minimal"} <= clients.keys():
        for what, span, targets in (
            ("intake", lambda r: r.intake, True),
            ("end to end", lambda r: r.wall, False),
        ):
            _ratios(what, [r.frames / span(r) for r in full_runs if span(r)], client_runs, targets)
    if full_runs:
        _posting(full_runs)
        waits = [r.longest_wait for r in full_runs]
        print(
            f"reading first, burst of {args.calls:,} calls: the longest a write of the fake AMI "
            f"waited for the daemon to read: {max(waits) * 1e3:.0f} ms (worst of "
            f"{len(waits)} runs: {', '.join(f'{w * 1e3:.0f}' for w in waits)} ms); Asterisk's "
            f"writetimeout {WRITE_TIMEOUT:.0f} s: {_verdict(max(waits) < WRITE_TIMEOUT)}"
        )
    print()
    print(
        f"{'latency: last Hangup frame written -> hangup POST received':62s} "
        f"{'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'n':>6s}"
    )
    for label, res in (("full speed", res_full), (f"paced {args.rate:.0f} calls/s", res_paced)):
        if res is not None:
            lat = res.check.latencies
            print(
                f"{label:62s} {pct(lat, 50) * 1e3:8.1f} {pct(lat, 99) * 1e3:8.1f} "
                f"{(max(lat) if lat else float('nan')) * 1e3:8.1f} {len(lat):6d}"
            )
    if res_paced is not None:
        p99 = pct(res_paced.check.latencies, 99)
        print(f"paced p99 target < 50 ms: {_verdict(p99 < 0.050)}")
    print()
    print(
        f"{'posts':24s} {'expected':>9s} {'received':>9s} {'lost':>5s} {'dup':>5s} {'wrong':>6s} "
        f"{'malformed':>9s}"
    )
    full_check = _merged([r.check for r in full_runs]) if full_runs else None
    full_label = "full" + (f" ({len(full_runs)} runs)" if len(full_runs) > 1 else "")
    for label, res, c in (
        (full_label, res_full, full_check),
        ("paced", res_paced, res_paced.check if res_paced else None),
        ("soak", res_soak, res_soak.check if res_soak else None),
    ):
        if res is not None and c is not None:
            print(
                f"{label:24s} {c.expected:9d} {c.posts:9d} {c.lost:5d} {c.duplicated:5d} "
                f"{c.wrong:6d} {c.malformed:9d}" + ("" if res.ok else "  (STALLED)")
            )
            for kind, count in c.kinds.most_common(3):
                print(f"  {count} x {kind}")
            if c.example:
                print(f"  first problem: {c.example}")
    print()
    for label, res in (("full", res_full), ("paced", res_paced), ("soak", res_soak)):
        if res is not None:
            print(
                f"daemon RSS, {label}: peak {res.peak:.1f} MB; "
                + "; ".join(f"{n:,} calls {mb:.1f} MB ({st})" for n, mb, st in res.rss)
            )
    if res_soak is not None and len(res_soak.rss) >= 3:
        growth = res_soak.rss[-1][1] - res_soak.rss[1][1]
        print(
            f"soak RSS growth from {res_soak.rss[1][0]:,} to {res_soak.rss[-1][0]:,} calls: "
            f"{growth:+.1f} MB"
        )
    if args.profile:
        print(f"\ncProfile of the full-speed daemon: {args.profile}")
        import pstats

        st = pstats.Stats(str(args.profile))
        st.sort_stats("tottime").print_stats(25)


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _ratios(
    what: str,
    rates: list[float],
    client_runs: dict[str, list[tuple[float, float, int]]],
    targets: bool,
) -> None:
    """The daemon's events/s over cacofonisk's and the minimal parser's, best and median runs."""
    if not rates:
        print(f"{what}: no run finished")
        return
    for kind, pick in (("best", max), ("median", statistics.median)):
        d = pick(rates)
        caco = d / pick([n / w for w, _, n in client_runs["cacofonisk"]])
        floor = d / pick([n / w for w, _, n in client_runs["minimal"]])
        verdicts = (
            (
                f" (target >= 1.5x: {_verdict(caco >= 1.5)})",
                f" (target >= 0.5x: {_verdict(floor >= 0.5)})",
            )
            if targets
            else ("", "")
        )
        print(
            f"{what}, {kind} runs: daemon / cacofonisk = {caco:.2f}x{verdicts[0]}; "
            f"daemon / minimal parser = {floor:.2f}x{verdicts[1]}"
        )


def _posting(runs: list[PhaseResult]) -> None:
    """POSTs/s from the first POST to the last, and the daemon's CPU per POST, per full run.

    ``all``: all its CPU over the run / POSTs (reading AMI included: an upper bound);
    ``posting only``: its CPU after the intake ended / the POSTs sent after it.
    """
    rates, per_post, per_post_after = [], [], []
    for r in runs:
        n = r.check.posts
        span = r.check.last_post - r.first_post
        if not n or span <= 0:
            continue
        rates.append(n / span)
        per_post.append(r.cpu / n)
        after = n - r.intake_posts
        if after > 0 and r.cpu > r.intake_cpu:
            per_post_after.append((r.cpu - r.intake_cpu) / after)
    if not rates:
        print("posting: no run finished")
        return

    def ms(values: list[float]) -> str:
        return "/".join(f"{v * 1e3:.2f}" for v in values) + " ms"

    print(
        f"posting, full phase: {max(rates):,.0f} POSTs/s first POST -> last, best of "
        f"{len(rates)} runs (median {statistics.median(rates):,.0f}; target >= 500: "
        f"{_verdict(max(rates) >= 500)}); daemon CPU per POST, all of it {ms(per_post)}, "
        f"after the intake (posting only) {ms(per_post_after)}"
    )


def _rules_for(tmp: Path) -> CallRules:
    """CallRules exactly as the daemon builds them from the bench config."""
    d = Path(tempfile.mkdtemp(dir=tmp))
    cfg = d / "c.toml"
    cfg.write_text(config_text(d, 1, 1))
    cfg.chmod(0o600)
    return CallRules.from_config(load_config(cfg))


def _spread(rates: list[float]) -> str:
    """All runs' events/s when there were several: how noisy the machine was."""
    if len(rates) < 2:
        return ""
    return "runs: " + " ".join(f"{r / 1000:.1f}k" for r in rates)


def _merged(checks: list[Check]) -> Check:
    """Post counts summed over runs (every run must lose nothing); first problem kept."""
    out = Check()
    for c in checks:
        out.posts += c.posts
        out.expected += c.expected
        out.lost += c.lost
        out.duplicated += c.duplicated
        out.wrong += c.wrong
        out.malformed += c.malformed
        out.kinds.update(c.kinds)
        out.example = out.example or c.example
    return out


def _row(label: str, n: int, wall: float, cpu: float, note: str) -> tuple[str, str, str, str]:
    rate = n / wall if wall else 0.0
    cpu_cols = f"{cpu:7.2f} {fmt_rate(n / cpu)}" if cpu else f"{'':7s} {'':10s}"
    return (f"{label:56s}", fmt_rate(rate), f"{wall:7.2f} {cpu_cols}", note)


if __name__ == "__main__":
    main()

"""The lab: two private Asterisk instances on loopback, a tiny AMI client and the daemon as a
subprocess; the demo's PBX (``cti-bridge demo``) and the e2e tests' lab (tests/e2e).

* ``pbx``: the Asterisk that cti-bridge watches (AMI, FastAGI hook, trunk ``carrier``, phones
  ``alice``/``bob``, ring group, queue; config under ``asterisk/pbx``).
* ``world``: a second Asterisk playing the carrier and both handsets (``asterisk/world``). It places
  the calls into the pbx (AMI Originate of ``Local/<number>@world-call``), answers/rejects them as
  told per target (AstDB ``mode/<target>``) and reports every arrival with the caller id it saw
  (``UserEvent(WorldArrival)``).

Everything is written for threads, not asyncio, so that session-scoped fixtures need no event
loop. Nothing here imports the rest of the project: the lab must not share the daemon's bugs.
The configs ship as package data (``asterisk/{common,pbx,world}``); the operator's hook files
(conf/asterisk/*_cti.conf) are read from a source tree when there is one, else the lab writes
its own AMI user and an empty hook include.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "asterisk"
ROOT = HERE.parent.parent  # the source tree (conf/asterisk), when installed editable
MANAGER_CTI = ROOT / "conf" / "asterisk" / "manager_cti.conf"
# The AMI user's event filters when conf/asterisk/ is not at hand (a pip-installed demo): the
# shipped file's lines, kept equal to cti_bridge.ami.wanted by a test.
FALLBACK_FILTERS = (
    "Event: (AgentCalled|AgentConnect|BridgeDestroy|BridgeEnter|BridgeLeave|DialBegin|DialEnd|"
    "DialState|FullyBooted|Hangup|HangupRequest|LocalBridge|NewCallerid|NewConnectedLine|"
    "Newchannel|Newstate|OriginateResponse|QueueCallerAbandon|QueueCallerJoin)",
    "^Event: Newexten[^A-Za-z].*Application: (VoiceMail)[^A-Za-z]",
    "!Event: HangupHandler",
)
EXTENSIONS_CTI = ROOT / "conf" / "asterisk" / "extensions_cti.conf"
SHIPPED_AGI = "agi://127.0.0.1:4573/"

MODULE_DIRS = (
    "/usr/lib/asterisk/modules",
    "/usr/lib/x86_64-linux-gnu/asterisk/modules",
    "/usr/lib64/asterisk/modules",
)
RING_TIMEOUT = 6  # seconds every Dial()/Queue() of the pbx rings
FALLBACK_TIMEOUT = 3  # seconds the phones ring before a DID falls back to voicemail


def asterisk_version(path: str) -> str | None:
    """``asterisk -V`` of ``path`` ("Asterisk 16.28.0~dfsg-0+deb11u4"), None if it does not run."""
    try:
        out = subprocess.run([path, "-V"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.stdout.strip()
    return text if out.returncode == 0 and text.startswith("Asterisk ") else None


def system_asterisk() -> str | None:
    """The asterisk on PATH (or in /usr/sbin, often not on a user's PATH), found or not."""
    path = shutil.which("asterisk")
    if path is None and os.path.exists("/usr/sbin/asterisk"):
        path = "/usr/sbin/asterisk"
    return path


def asterisk_binary() -> str | None:
    """Path of an asterisk binary that runs, or None. ``CTI_E2E_ASTERISK`` overrides the
    lookup (e.g. a nonexistent path to see the skip/fail rule at work)."""
    path = os.environ.get("CTI_E2E_ASTERISK") or system_asterisk()
    return path if path is not None and asterisk_version(path) is not None else None


def module_dir() -> str:
    """The system Asterisk's module directory (the lab itself uses each binary's own default)."""
    for d in MODULE_DIRS:
        if os.path.isfile(os.path.join(d, "chan_pjsip.so")):
            return d
    raise RuntimeError(f"chan_pjsip.so not found in {MODULE_DIRS}")


def _die_with_parent() -> None:
    """Child side of Popen: SIGKILL when the spawning thread dies (pytest killed hard), so no
    lab process outlives a run. Linux only; elsewhere the fixtures' finalizers must do."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def spawn_logged(cmd: list[str], log_path: Path, header: str = "") -> subprocess.Popen[bytes]:
    """Start a lab process in its own session, output appended to ``log_path``, dying with us."""
    with log_path.open("ab") as out:
        if header:
            out.write(header.encode())
            out.flush()
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


# ----------------------------------------------------------------------------- ports


def _bindable(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PortPicker:
    """Loopback ports for one lab, free on TCP and UDP, never twice, never the well-known ones.

    Ports come from 21000-32000: below the kernel's ephemeral range (so an outgoing connection
    cannot grab one between the check and Asterisk's bind) and above a system Asterisk's
    default RTP range 10000-20000, AMI 5038 and SIP 5060.
    """

    def __init__(self, low: int = 21000, high: int = 32000) -> None:
        self.low, self.high = low, high
        self.taken: set[int] = set()
        self._rng = random.Random()

    def _free(self, port: int) -> bool:
        return (
            port not in self.taken
            and _bindable(port, socket.SOCK_STREAM)
            and _bindable(port, socket.SOCK_DGRAM)
        )

    def port(self) -> int:
        for _ in range(500):
            p = self._rng.randrange(self.low, self.high)
            if self._free(p):
                self.taken.add(p)
                return p
        raise RuntimeError("no free loopback port")

    def rtp_range(self, size: int = 100) -> tuple[int, int]:
        """An even-aligned UDP range of ``size`` ports, of which the first few are checked."""
        for _ in range(200):
            start = self._rng.randrange(self.low, self.high - size) & ~1
            ports = range(start, start + size)
            if self.taken.isdisjoint(ports) and all(
                _bindable(p, socket.SOCK_DGRAM) for p in range(start, start + 8)
            ):
                self.taken.update(ports)
                return start, start + size - 1
        raise RuntimeError("no free RTP range")


# ----------------------------------------------------------------------------- AMI client


Message = dict[str, str]


class AmiClient:
    """A minimal blocking AMI client: one reader thread, all events kept in order.

    Repeated headers keep the last value (the lab never reads ChanVariable lists).
    """

    def __init__(self, host: str, port: int, username: str, secret: str, name: str = "ami") -> None:
        self.host, self.port, self.username, self.secret, self.name = (
            host,
            port,
            username,
            secret,
            name,
        )
        self.events: list[Message] = []
        self._responses: dict[str, Message] = {}
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.connected = False

    def connect(self, timeout: float = 10.0) -> AmiClient:
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        sock.settimeout(None)
        self._sock = sock
        self.connected = True
        self._thread = threading.Thread(
            target=self._read, args=(sock,), daemon=True, name=self.name
        )
        self._thread.start()
        r = self.action("Login", Username=self.username, Secret=self.secret, Events="on")
        if r.get("Response") != "Success":
            raise RuntimeError(f"{self.name}: AMI login failed: {r.get('Message')}")
        return self

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread is not None:
            self._thread.join(2)

    def _read(self, sock: socket.socket) -> None:
        buf = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while b"\r\n\r\n" in buf:
                    raw, buf = buf.split(b"\r\n\r\n", 1)
                    self._dispatch(raw.decode("utf-8", "replace"))
                # The banner line has no blank line after it.
                if buf.startswith(b"Asterisk Call Manager") and b"\r\n" in buf:
                    buf = buf.split(b"\r\n", 1)[1]
        except OSError:
            pass
        finally:
            with self._cond:
                self.connected = False
                self._cond.notify_all()

    def _dispatch(self, raw: str) -> None:
        msg: Message = {}
        for line in raw.split("\r\n"):
            if line.startswith("Asterisk Call Manager"):
                continue
            key, sep, value = line.partition(":")
            if sep:
                key, value = key.strip(), value.strip()
                # Repeated headers (Command's Output lines) are joined by newlines.
                msg[key] = f"{msg[key]}\n{value}" if key in msg else value
        if not msg:
            return
        with self._cond:
            if "Event" in msg:
                msg["_t"] = repr(time.monotonic())
                self.events.append(msg)
            elif "ActionID" in msg:
                self._responses[msg["ActionID"]] = msg
            self._cond.notify_all()

    def send(self, action: str, **fields: str | int) -> str:
        action_id = f"{self.name}-{next(self._ids)}"
        lines = [f"Action: {action}", f"ActionID: {action_id}"]
        for k, v in fields.items():
            if k == "Variable" and isinstance(v, str) and "\n" in v:
                lines += [f"Variable: {x}" for x in v.split("\n")]
            else:
                lines.append(f"{k}: {v}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        if self._sock is None:
            raise ConnectionError(f"{self.name}: not connected")
        self._sock.sendall(data)
        return action_id

    def action(self, action: str, timeout: float = 10.0, **fields: str | int) -> Message:
        action_id = self.send(action, **fields)
        deadline = time.monotonic() + timeout
        with self._cond:
            while action_id not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0 or not self.connected:
                    raise TimeoutError(f"{self.name}: no response to {action}")
                self._cond.wait(left)
            return self._responses.pop(action_id)

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def since(self, mark: int, name: str | None = None) -> list[Message]:
        with self._cond:
            evs = self.events[mark:]
        return [e for e in evs if name is None or e.get("Event") == name]

    def wait_event(
        self,
        predicate: Callable[[Message], bool],
        since: int = 0,
        timeout: float = 10.0,
    ) -> Message:
        deadline = time.monotonic() + timeout
        with self._cond:
            i = since
            while True:
                while i < len(self.events):
                    if predicate(self.events[i]):
                        return self.events[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: event not seen within {timeout} s")
                self._cond.wait(min(left, 0.2))


# ----------------------------------------------------------------------------- Asterisk


def render(text: str, values: dict[str, str]) -> str:
    for k, v in values.items():
        text = text.replace(f"@{k}@", v)
    return text


class Asterisk:
    """One private Asterisk in the foreground of its own process group."""

    def __init__(self, name: str, root: Path, values: dict[str, str], binary: str) -> None:
        self.name = name
        self.dir = root / name
        self.values = {**values, "DIR": str(self.dir)}
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = self.dir / "etc" / "asterisk.conf"
        self.console_log = self.dir / "console.log"

    def write_config(self, extra: dict[str, str] | None = None) -> None:
        etc = self.dir / "etc"
        for sub in ("etc", "lib", "agi-bin", "spool", "run", "log", "cache"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        for src in ("common", self.name):
            for f in sorted((TEMPLATES / src).glob("*.conf")):
                (etc / f.name).write_text(render(f.read_text("utf-8"), self.values), "utf-8")
        for fname, text in (extra or {}).items():
            (etc / fname).write_text(text, "utf-8")

    def start(self, timeout: float = 60.0) -> None:
        self.spawn()
        self.wait_booted(timeout)

    def spawn(self) -> None:
        """Start the process (from the thread that will outlive it: see _die_with_parent)."""
        self.proc = spawn_logged(
            [self.binary, "-C", str(self.conf), "-f", "-n", "-q"], self.console_log
        )

    def rx(self, command: str, timeout: float = 15.0) -> str:
        r = subprocess.run(
            [self.binary, "-C", str(self.conf), "-rx", command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if r.returncode != 0:
            raise RuntimeError(f"{self.name}: asterisk -rx {command!r}: {r.stdout}{r.stderr}")
        return r.stdout

    def wait_booted(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name}: asterisk exited ({self.proc.returncode}):\n{self.tail()}"
                )
            try:
                out = self.rx("core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
                if "fully booted" in out.lower():
                    return
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: not fully booted in {timeout} s:\n{self.tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(Exception):
            self.rx("core stop now", timeout=5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)

    def tail(self, lines: int = 60) -> str:
        chunks = []
        for f in (self.console_log, self.dir / "log" / "full"):
            if f.exists():
                text = f.read_text("utf-8", "replace").splitlines()[-lines:]
                chunks.append(f"--- {self.name} {f.name} ---\n" + "\n".join(text))
        return "\n".join(chunks)


# ----------------------------------------------------------------------------- the lab


@dataclass
class CallHandle:
    """A call the world placed into the pbx."""

    action_id: str
    target: str
    caller: str
    mark: int  # world AMI event index when the call was placed


@dataclass
class Lab:
    """pbx + world, started together; see the module docstring."""

    root: Path
    binary: str
    ports: PortPicker = field(default_factory=PortPicker)
    ami_secret: str = field(default_factory=lambda: secrets.token_hex(12))
    ami_username: str = "cti-bridge"
    pbx: Asterisk = field(init=False)
    world: Asterisk = field(init=False)
    pbx_ami: AmiClient = field(init=False)
    world_ami: AmiClient = field(init=False)
    agi_port: int = field(init=False)
    pbx_ami_port: int = field(init=False)

    def __post_init__(self) -> None:
        p = self.ports
        self.pbx_ami_port, world_ami_port = p.port(), p.port()
        pbx_sip, world_sip = p.port(), p.port()
        self.agi_port = p.port()
        lab_secret = secrets.token_hex(8)
        self._lab_secret = lab_secret
        common = {
            "LAB_SECRET": lab_secret,
            "RING_TIMEOUT": str(RING_TIMEOUT),
            "FALLBACK_TIMEOUT": str(FALLBACK_TIMEOUT),
            "AGI_PORT": str(self.agi_port),
            "PBX_SIP_PORT": str(pbx_sip),
            "WORLD_SIP_PORT": str(world_sip),
        }
        pbx_rtp, world_rtp = p.rtp_range(), p.rtp_range()
        self.pbx = Asterisk(
            "pbx",
            self.root,
            {
                **common,
                "AMI_PORT": str(self.pbx_ami_port),
                "SIP_PORT": str(pbx_sip),
                "RTP_START": str(pbx_rtp[0]),
                "RTP_END": str(pbx_rtp[1]),
            },
            self.binary,
        )
        self.world = Asterisk(
            "world",
            self.root,
            {
                **common,
                "AMI_PORT": str(world_ami_port),
                "SIP_PORT": str(world_sip),
                "RTP_START": str(world_rtp[0]),
                "RTP_END": str(world_rtp[1]),
            },
            self.binary,
        )
        self._world_ami_port = world_ami_port

    def manager_cti_conf(self) -> str:
        """The shipped least-privilege AMI user, with a secret of our own."""
        if MANAGER_CTI.is_file():
            lines = MANAGER_CTI.read_text("utf-8").splitlines()
            section = next(
                (
                    ln.strip()[1:-1]
                    for ln in lines
                    if ln.strip().startswith("[") and ln.strip().endswith("]")
                ),
                "cti-bridge",
            )
            self.ami_username = section
            out = [
                f"secret = {self.ami_secret}" if ln.strip().startswith("secret") else ln
                for ln in lines
            ]
            return "\n".join(out) + "\n"
        # Installed without the source tree: the same user; FALLBACK_FILTERS is checked against
        # cti_bridge.ami.wanted by tests/demo/test_lab_fallback.py.
        filters = "".join(f"eventfilter = {f}\n" for f in FALLBACK_FILTERS)
        return (
            f"[{self.ami_username}]\nsecret = {self.ami_secret}\n"
            "deny = 0.0.0.0/0.0.0.0\npermit = 127.0.0.1/255.255.255.255\n"
            "read = system,call,agent,user,dialplan\nwrite = call,reporting,originate\n"
            f"writetimeout = 5000\n{filters}"
        )

    def extensions_cti_conf(self) -> str:
        """The shipped dialplan hooks, pointed at the lab's AGI port."""
        if not EXTENSIONS_CTI.is_file():
            return "; conf/asterisk/extensions_cti.conf not found\n"
        text = EXTENSIONS_CTI.read_text("utf-8")
        return text.replace(SHIPPED_AGI, f"agi://127.0.0.1:{self.agi_port}/")

    def start(self) -> None:
        self.pbx.write_config(
            {
                "manager_cti.conf": self.manager_cti_conf(),
                "extensions_cti.conf": self.extensions_cti_conf(),
            }
        )
        self.world.write_config()
        # Start both at once: each takes a few seconds of mostly module loading. Spawned here,
        # in the caller's thread, which outlives them (PDEATHSIG follows the spawning thread).
        errors: list[BaseException] = []
        for a in (self.pbx, self.world):
            a.spawn()

        def boot(a: Asterisk) -> None:
            try:
                a.wait_booted()
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=boot, args=(a,)) for a in (self.pbx, self.world)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        self.connect_ami()

    def connect_ami(self) -> None:
        self.pbx_ami = AmiClient(
            "127.0.0.1", self.pbx_ami_port, "lab", self._lab_secret, "pbx-ami"
        ).connect()
        self.world_ami = AmiClient(
            "127.0.0.1", self._world_ami_port, "lab", self._lab_secret, "world-ami"
        ).connect()

    def stop(self) -> None:
        for c in ("pbx_ami", "world_ami"):
            client = getattr(self, c, None)
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        for a in (self.pbx, self.world):
            a.stop()

    def restart_pbx(self, timeout: float = 60.0) -> None:
        """``core restart now`` on the pbx (same process, new boot); lab AMI reconnected."""
        with contextlib.suppress(Exception):
            self.pbx.rx("core restart now", timeout=10)
        # Wait until the old instance has gone away, then until the new one is booted.
        deadline = time.monotonic() + timeout
        while self.pbx_ami.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        self.pbx.wait_booted(timeout)
        self.pbx_ami.close()
        self.pbx_ami = AmiClient(
            "127.0.0.1", self.pbx_ami_port, "lab", self._lab_secret, "pbx-ami"
        ).connect()

    # -- world behaviour ------------------------------------------------------------------

    def set_mode(
        self, target: str, mode: str, talk: float | None = None, ring: float | None = None
    ) -> None:
        """What ``target`` (alice, bob, a number or "default") does when the pbx calls it;
        ``answer`` rings ``ring`` s (default 1), then stays up ``talk`` s (default 60)."""
        self.world_ami.action("DBPut", Family="mode", Key=target, Val=mode)
        if talk is not None:
            self.world_ami.action("DBPut", Family="talk", Key=target, Val=f"{talk:g}")
        if ring is not None:
            self.world_ami.action("DBPut", Family="ring", Key=target, Val=f"{ring:g}")

    def reset_modes(self) -> None:
        for fam in ("mode", "talk", "ring"):
            self.world_ami.action("DBDelTree", Family=fam)

    def command(self, which: str, command: str) -> str:
        """A CLI command over the lab's AMI (much cheaper than spawning ``asterisk -rx``)."""
        client = self.pbx_ami if which == "pbx" else self.world_ami
        r = client.action("Command", Command=command)
        return r.get("Output", "")

    def active_channels(self, which: str) -> int:
        for line in self.command(which, "core show channels count").splitlines():
            if "active channel" in line:
                return int(line.split()[0])
        raise RuntimeError(f"{which}: unexpected 'core show channels count' output")

    def hangup_all(self) -> None:
        for which in ("world", "pbx"):
            with contextlib.suppress(Exception):
                self.command(which, "channel request hangup all")

    def wait_idle(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            counts = (self.active_channels("pbx"), self.active_channels("world"))
            if counts == (0, 0):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"lab not idle after {timeout} s: pbx/world channels {counts}")
            time.sleep(0.1)

    # -- placing calls --------------------------------------------------------------------

    def call(
        self,
        number: str,
        caller: str,
        caller_name: str = "",
        talk: float = 2.0,
        ring_timeout: float = 20.0,
    ) -> CallHandle:
        """The world dials ``number`` at the pbx as ``caller`` (see [world-call]).

        The caller hangs up ``talk`` s after being answered (a queue answers at once), or gives
        up ``ring_timeout`` s after dialling when nobody answered.
        """
        mark = self.world_ami.mark()
        action_id = self.world_ami.send(
            "Originate",
            Channel=f"Local/{number}@world-call",
            Application="Wait",
            Data=f"{talk:g}",
            Timeout=int(ring_timeout * 1000),
            Async="true",
            Variable=f"CALLER={caller}\nCALLERNAME={caller_name}",
            CallerID=f'"{caller_name}" <{caller}>',
        )
        return CallHandle(action_id, number, caller, mark)

    def call_from_phone(self, phone: str, number: str, **kw: Any) -> CallHandle:
        """A call placed on handset ``phone``: the pbx knows it by the From user."""
        return self.call(number, caller=phone, caller_name=phone, **kw)

    def originate_response(self, handle: CallHandle, timeout: float = 30.0) -> Message:
        return self.world_ami.wait_event(
            lambda e: (
                e.get("Event") == "OriginateResponse" and e.get("ActionID") == handle.action_id
            ),
            since=handle.mark,
            timeout=timeout,
        )

    def arrivals(self, since: int = 0, target: str | None = None) -> list[Message]:
        """Calls the pbx placed to the world (handsets or carrier) since event index ``since``."""
        return [
            e
            for e in self.world_ami.since(since, "UserEvent")
            if e.get("UserEvent") == "WorldArrival"
            and (target is None or e.get("Target") == target)
        ]

    def answered_phone(self, target: str, since: int = 0, timeout: float = 15.0) -> str:
        """The world's channel of handset ``target`` once it answered (after ``since``)."""
        ev = self.world_ami.wait_event(
            lambda e: e.get("UserEvent") == "WorldAnswered" and e.get("Target") == target,
            since=since,
            timeout=timeout,
        )
        return ev["Channel"]

    def press(self, channel: str, digits: str) -> None:
        """The handset on world channel ``channel`` sends ``digits`` (RFC 4733 DTMF)."""
        for digit in digits:
            self.world_ami.action("PlayDTMF", Channel=channel, Digit=digit, Duration=150)

    def hang_up_phone(self, channel: str) -> None:
        """The handset on world channel ``channel`` hangs up (a BYE to the pbx)."""
        self.world_ami.action("Hangup", Channel=channel, Cause=16)

    def dial_results(self, since: int = 0, timeout: float = 10.0) -> list[Message]:
        """The world's Dial() results since ``since``, waiting for the first one: the world
        reports it after its Dial() returns, which can be after the OriginateResponse."""

        def is_result(e: Message) -> bool:
            return e.get("Event") == "UserEvent" and e.get("UserEvent") == "WorldDialResult"

        self.world_ami.wait_event(is_result, since=since, timeout=timeout)
        return [e for e in self.world_ami.since(since) if is_result(e)]


# ----------------------------------------------------------------------------- the daemon


def daemon_command() -> list[str]:
    exe = Path(sys.executable).parent / "cti-bridge"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "cti_bridge"]


def daemon_available() -> str | None:
    """None when ``cti-bridge run`` exists, else why not."""
    try:
        r = subprocess.run(
            [*daemon_command(), "run", "--help"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cti-bridge not runnable: {e}"
    if r.returncode != 0:
        out = (r.stderr or r.stdout).strip()[-300:]
        return f"`cti-bridge run --help` failed ({r.returncode}): {out}"
    return None


# Over 60 lines only because the config is one inline TOML template, read as the file it writes.
def daemon_config(
    tmp: Path,
    *,
    ami_port: int,
    ami_username: str,
    ami_secret: str,
    zammad_url: str,
    agi_port: int,
    users: dict[str, str] | None = None,
    report_internal: bool = False,
    web_listen: str = "",
    extra: str = "",
) -> Path:
    """A daemon configuration for this lab in ``tmp`` (``web_listen``: the ``[web]`` listener,
    e.g. "127.0.0.1:0" for /calls on a free port; ``extra``: TOML appended as it is, e.g.
    ``[dial]`` or ``[[route]]`` tables)."""
    users = {"101": "Alice Agent"} if users is None else users

    def q(s: str) -> str:
        return json.dumps(s, ensure_ascii=False)  # a TOML basic string is a JSON string

    user_lines = "\n".join(f"{q(k)} = {q(v)}" for k, v in users.items())
    text = f"""\
[ami]
host = "127.0.0.1"
port = {ami_port}
username = {q(ami_username)}
secret = {q(ami_secret)}
ping_interval = 1.0
ping_timeout = 1.0
reconnect_interval = 0.3

[zammad]
url = {q(zammad_url)}
timeout = 1.0
max_backoff = 0.5

[pbx]
trunk_endpoints = ["carrier"]
trunk_contexts = ["from-trunk"]
internal_contexts = ["from-internal"]
report_internal = {"true" if report_internal else "false"}

[users]
{user_lines}

[agi]
listen = "127.0.0.1:{agi_port}"
timeout = 2.0

[outbox]
path = {q(str(tmp / "outbox.sqlite3"))}

[status]
socket = {q(str(tmp / "status.sock"))}
"""
    if web_listen:
        text += f"\n[web]\nlisten = {q(web_listen)}\n"
    text += extra
    path = tmp / "cti-bridge.toml"
    path.write_text(text, "utf-8")
    path.chmod(0o600)
    return path


class Daemon:
    """``cti-bridge run`` as a subprocess, its stderr in a log file kept across restarts."""

    def __init__(self, config: Path, log: Path, *, dry_run: bool = False) -> None:
        self.config = config
        self.dry_run = dry_run  # ``run --dry-run``: posts nothing
        self.socket = config.parent / "status.sock"  # as daemon_config writes it
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Daemon:
        self.starts += 1
        self.proc = spawn_logged(
            [
                *daemon_command(),
                "run",
                "--config",
                str(self.config),
                "--log-level",
                "debug",
                *(["--dry-run"] if self.dry_run else []),
            ],
            self.log,
            f"\n===== start #{self.starts} =====\n",
        )
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self, timeout: float = 10.0) -> tuple[int, dict[str, Any] | None, str]:
        r = subprocess.run(
            [*daemon_command(), "status", "--json", "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        doc = None
        with contextlib.suppress(ValueError):
            doc = json.loads(r.stdout)
        return r.returncode, doc, r.stdout + r.stderr

    def check(self, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*daemon_command(), "check", "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def status_doc(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """The status document read straight from the socket (one JSON document, then EOF):
        cheap enough to poll; the CLI itself is exercised by status()."""
        chunks = []
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(str(self.socket))
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            doc = json.loads(b"".join(chunks))
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def wait_ready(self, timeout: float = 20.0) -> dict[str, Any]:
        """Until status says AMI is connected (the daemon tracks calls from then on)."""
        return self.wait_status(lambda doc: bool(doc.get("ami", {}).get("connected")), timeout)

    def wait_status(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0
    ) -> dict[str, Any]:
        """Until ``status --json`` answers and ``predicate`` holds for it; the last status."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            if not self.running():
                raise RuntimeError(
                    f"daemon exited ({self.proc and self.proc.returncode}):\n{self.log_tail()}"
                )
            doc = self.status_doc()
            if doc is not None:
                last = json.dumps(doc)
                if predicate(doc):
                    return doc
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"status not as awaited in {timeout} s; last status: {last}\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # Anything it left in its group (there should be nothing).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_tail(self, lines: int = 200) -> str:
        if not self.log.exists():
            return "(no daemon log)"
        text = self.log.read_text("utf-8", "replace").splitlines()[-lines:]
        return "--- daemon log ---\n" + "\n".join(text)


@contextlib.contextmanager
def lab_dir(prefix: str = "cti-e2e-") -> Iterator[Path]:
    """A short temp dir (unix socket paths of astrundir must stay under 108 bytes)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield d
    finally:
        if os.environ.get("CTI_E2E_KEEP"):
            print(f"e2e lab kept in {d}", file=sys.stderr)
        else:
            shutil.rmtree(d, ignore_errors=True)

"""Status socket: the running daemon answers ``cti-bridge status`` over a unix socket.

A unix socket (mode 0660, group-readable) rather than HTTP: no port to expose, access is
controlled by file permissions, and the CLI needs no configuration beyond the socket path.
Each connection gets exactly one JSON document and is closed, so ``socat``/``nc -U`` work too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cti_bridge.config import redact_url

log = logging.getLogger(__name__)

SOCKET_MODE = 0o660
MAX_DOCUMENT = 1024 * 1024
EXIT_UNAVAILABLE = 3

Snapshot = Callable[[], dict[str, Any]]


class StatusUnavailable(Exception):
    """No daemon answered on the status socket; the message is one line for the operator."""


class StatusServer:
    def __init__(self, socket_path: str, snapshot: Snapshot) -> None:
        self.socket_path = socket_path
        self._snapshot = snapshot
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        path = Path(self.socket_path)
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        _remove_stale(path)
        self._server = await asyncio.start_unix_server(self._handle, path=str(path))
        # Set explicitly: the umask decides the mode at bind(), and systemd's is often 0022.
        os.chmod(path, SOCKET_MODE)
        log.info("status socket at %s", path)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    def document(self) -> bytes:
        try:
            doc: Any = self._snapshot()
        except Exception as exc:  # the CLI should still get an answer that says what broke
            log.exception("status snapshot failed")
            doc = {"error": f"snapshot failed: {type(exc).__name__}"}
        return json.dumps(doc, default=str, sort_keys=True).encode() + b"\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(self.document())
            await asyncio.wait_for(writer.drain(), 2.0)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


def _remove_stale(path: Path) -> None:
    """Remove a socket left by a crashed daemon, but never a live one or a non-socket file."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{path} exists and is not a socket; refusing to replace it")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink(missing_ok=True)
            return
    raise OSError(f"{path} is in use: is another cti-bridge running?")


def fetch_status(socket_path: str, timeout: float = 2.0) -> dict[str, Any]:
    """Ask the running daemon for its status document (blocking; for the CLI)."""
    where = f"no cti-bridge daemon is answering on {socket_path}"
    chunks: list[bytes] = []
    size = 0
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            deadline = time.monotonic() + timeout
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_DOCUMENT or time.monotonic() > deadline:
                    raise StatusUnavailable(f"{where} (answer too long)")
                sock.settimeout(max(0.01, deadline - time.monotonic()))
    except FileNotFoundError:
        raise StatusUnavailable(f"{where} (socket not found; is the service running?)") from None
    except PermissionError:
        raise StatusUnavailable(
            f"permission denied on {socket_path} (run as root or a member of the socket's group)"
        ) from None
    except ConnectionRefusedError:
        raise StatusUnavailable(f"{where} (connection refused; stale socket?)") from None
    except TimeoutError:
        raise StatusUnavailable(f"{where} (timed out after {timeout:g} s)") from None
    except OSError as exc:
        raise StatusUnavailable(f"{where} ({exc.strerror or type(exc).__name__})") from None
    try:
        doc = json.loads(b"".join(chunks))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise StatusUnavailable(f"{where} (the answer is not JSON)") from None
    if not isinstance(doc, dict):
        raise StatusUnavailable(f"{where} (the answer is not a JSON object)")
    return doc


def status_command(socket_path: str, as_json: bool) -> tuple[str, int]:
    """Everything ``cti-bridge status [--json]`` does except printing: (output, exit code)."""
    try:
        doc = fetch_status(socket_path)
    except StatusUnavailable as exc:
        return str(exc), EXIT_UNAVAILABLE
    if as_json:
        return json.dumps(doc, sort_keys=True), 0
    return format_status(doc), 0


# --- formatting -------------------------------------------------------------------------------

UNKNOWN = "?"


def _section(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, Mapping) else {}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _count(value: Any) -> str:
    n = _num(value)
    return UNKNOWN if n is None else str(int(n))


def format_time(value: Any) -> str:
    """Epoch seconds as local ``YYYY-MM-DD HH:MM:SS``; strings (ISO) are shown as they are."""
    n = _num(value)
    if n is not None:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(n))
    return str(value) if value else UNKNOWN


def format_age(seconds: Any) -> str:
    n = _num(seconds)
    if n is None:
        return UNKNOWN
    if n < 10:
        return f"{n:.1f} s"
    if n < 60:
        return f"{int(n)} s"
    return format_duration(n)


def format_duration(seconds: Any) -> str:
    n = _num(seconds)
    if n is None or n < 0:
        return UNKNOWN
    total = int(n)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def _clean(text: Any, limit: int = 160) -> str:
    """One line, no token: error texts may quote the Zammad URL."""
    line = " ".join(str(text).split())
    line = redact_url(line) if "://" in line else line
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _ami_line(ami: Mapping[str, Any]) -> str:
    if not ami:
        return UNKNOWN
    if ami.get("connected"):
        text = f"connected since {format_time(ami.get('since'))}"
        if ami.get("last_event_age_s") is not None:
            text += f" (last event {format_age(ami.get('last_event_age_s'))} ago)"
        return text
    text = "login failed" if ami.get("login_failed") else "disconnected"
    if ami.get("since"):
        text += f" since {format_time(ami.get('since'))}"
    if ami.get("last_error"):
        text += f": {_clean(ami['last_error'])}"
    return text


def _zammad_line(zammad: Mapping[str, Any]) -> str:
    if not zammad:
        return UNKNOWN
    if zammad.get("state") == "off":
        return "off (no [zammad] url: calls that match no [[route]] are not posted)"
    text = str(zammad.get("state") or UNKNOWN)
    if zammad.get("url"):
        via = f" via proxy {_clean(zammad['proxy'])}" if zammad.get("proxy") else ""
        text += f" ({_clean(zammad['url'])}{via})"
    if zammad.get("last_error") and zammad.get("state") != "ok":
        text += f": {_clean(zammad['last_error'])}"
    return text


def _outbox_line(outbox: Mapping[str, Any]) -> str:
    if not outbox:
        return UNKNOWN
    text = f"{_count(outbox.get('pending'))} pending"
    if outbox.get("pending") and outbox.get("oldest_age_s") is not None:
        text += f" (oldest {format_age(outbox.get('oldest_age_s'))})"
    if outbox.get("dead"):
        text += f", {_count(outbox.get('dead'))} dead"
    return text


def _route_rows(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """One ``Route`` row per [[route]]: name, state, URL (token redacted), its outbox lane."""
    routes = doc.get("routes")
    if not isinstance(routes, list):
        return []
    rows = []
    for route in routes:
        if not isinstance(route, Mapping) or route.get("name") in (None, "default"):
            continue
        text = f"{_clean(route['name'])}: {_zammad_line(route)}; {_outbox_line(route)}"
        rows.append(("Route", text))
    return rows


def _outbox_of(zammad: Mapping[str, Any]) -> Mapping[str, Any]:
    return {k: zammad[k] for k in ("pending", "oldest_age_s", "dead") if k in zammad}


def _agi_line(agi: Mapping[str, Any]) -> str:
    if not agi:
        return UNKNOWN
    if agi.get("enabled") is False:
        return "off ([agi] listen is empty)"
    decisions = agi.get("decisions")
    if not isinstance(decisions, Mapping):
        decisions = {}  # unknown, shown as "?", not as 0
    per = ", ".join(f"{a} {_count(decisions.get(a))}" for a in ("reject", "dial", "none"))
    text = f"{agi.get('listen') or UNKNOWN}, {_count(agi.get('requests'))} requests ({per})"
    for key in ("timeouts", "errors", "dropped", "refused"):
        if agi.get(key):
            text += f", {_count(agi[key])} {key}"
    return text


def _web_line(web: Mapping[str, Any]) -> str:
    if not web:
        return UNKNOWN
    if web.get("enabled") is False:
        return "off ([web] listen is empty)"
    text = str(web.get("url") or UNKNOWN)
    if web.get("public_url"):
        text += f", public {' '.join(str(web['public_url']).split())}"  # no secret in it
    return text


def format_status(doc: Mapping[str, Any]) -> str:
    """A short table for operators; any missing part shows as ``?`` rather than failing."""
    rows = [
        ("AMI", _ami_line(_section(doc, "ami"))),
        ("Zammad", _zammad_line(_section(doc, "zammad"))),
        *_route_rows(doc),
        ("Calls", f"{_count(_section(doc, 'calls').get('active'))} active"),
        # Delivery.status() carries the outbox figures under "zammad" when there is no "outbox".
        ("Outbox", _outbox_line(_section(doc, "outbox") or _outbox_of(_section(doc, "zammad")))),
    ]
    if "agi" in doc:
        rows.append(("AGI", _agi_line(_section(doc, "agi"))))
    if "web" in doc:
        rows.append(("Web", _web_line(_section(doc, "web"))))
    rows.append(("Uptime", format_duration(doc.get("uptime_s"))))
    if doc.get("version"):
        rows.append(("Version", str(doc["version"])))
    if doc.get("error"):
        rows.append(("Error", _clean(doc["error"])))
    if doc.get("dry_run"):
        would = _section(doc, "zammad").get("would_post")
        rows[1] = ("Zammad", f"dry run: nothing posted; {_count(would)} event(s) would have been")
    lines = [f"{label:<8} {value}" for label, value in rows]
    calls = doc.get("recent_calls")
    if isinstance(calls, list) and calls:
        shown = min(len(calls), RECENT_SHOWN)
        lines.append(f"Recent calls (newest first, {shown} of {len(calls)}):")
        lines += [_call_line(c) for c in calls[:RECENT_SHOWN] if isinstance(c, Mapping)]
    return "\n".join(lines)


RECENT_SHOWN = 10


def _call_line(call: Mapping[str, Any]) -> str:
    """One caller-log row: direction, from -> to, state and cause, Zammad's answer, delivery."""
    parts = [
        str(call.get("direction", "?")),
        f"{call.get('from', '?')} -> {call.get('to', '?')}",
        str(call.get("state", "?")),
        str(call.get("cause") or ""),
        str(call.get("zammad") or ""),
        f"[{call.get('delivery', '?')}]",
    ]
    return "  " + _clean(" ".join(p for p in parts if p))

"""A fake Zammad Generic CTI endpoint: a real HTTP server on 127.0.0.1 for tests, e2e and benches.

It models what Zammad does (docs/zammad-cti.md#1-endpoint-and-token,
docs/zammad-cti.md#4-the-call-log-and-what-makes-a-call-missed,
docs/zammad-cti.md#5-status-codes-and-error-bodies): the controller's check order and
texts (disabled/not configured 422, wrong token 401, bad direction 422), the call log state
machine (duplicate newCall -> 500 "This object already exists.", answer/hangup on an unknown
callId -> 500 "Error ID ...", answer after hangup ignored, duplicate hangup flips done), blocked
callers (reject/busy, still logged) and outbound caller-id rewriting (dial).

Faults (``fail``, ``garbage``, ``huge``, ``json_array``, ``redirect``, ``delay``) are queued and
consumed one request at a time, in front of Zammad's logic, as a proxy or app server would
produce them. ``delay`` models a reverse proxy that holds a request *before* the app sees it and
drops it when its client has gone meanwhile: a client that timed out therefore never gets its
request stored, so a retry after a timeout does not duplicate anything (the real-world worst
case, a timeout *after* processing, is the reason answer/hangup retries are limited).

``down()`` closes the listening socket and every open connection (clients get connection
refused), ``up()`` listens again on the same port.

Standalone: ``python -m cti_bridge.demo.zammad --port 8099 --token T`` prints one JSON line per
request to stdout (for the e2e lab).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

INVALID_TOKEN = {"error": "Invalid token, please contact your admin!"}
INVALID_DIRECTION = {"error": "Invalid 'direction'!"}
DISABLED = {"error": "Feature is disabled, please contact your administrator!"}
NOT_CONFIGURED = {"error": "Feature not configured, please contact your admin!"}
ALREADY_EXISTS = {
    "error": "This object already exists.",
    "error_human": "This object already exists.",
}
HTML_500 = (
    b"<!DOCTYPE html><html><body><h1>We're sorry, but something went wrong.</h1></body></html>"
)


def error_id() -> dict[str, str]:
    return {
        "error": f"Error ID {int(time.monotonic() * 1e6) % 10**8:08x}: "
        "Please contact your administrator."
    }


@dataclass
class Request:
    """One request as received and answered."""

    method: str
    path: str
    fields: list[tuple[str, str]]
    status: int
    response: bytes
    at: float
    fault: str | None = None

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.fields if k == key), None)

    def getall(self, key: str) -> list[str]:
        return [v for k, v in self.fields if k == key]


@dataclass
class CallLog:
    """A Cti::Log row plus the list of events Zammad stored for it, in arrival order."""

    call_id: str
    direction: str
    from_: str
    to: str
    state: str = "newCall"
    done: bool = False
    comment: str = ""
    to_comment: str = ""
    from_comment: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Fault:
    kind: str
    times: int
    status: int = 500
    delay: float = 0.0
    location: str = ""
    size: int = 0


def _fields_dict(fields: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in fields:
        if k.endswith("[]"):
            out.setdefault(k, []).append(v)
        else:
            out[k] = v
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)

    def do_GET(self) -> None:
        self._send(405, b'{"error":"Method Not Allowed"}')

    def do_POST(self) -> None:
        arrived = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        fake = self.server.fake
        fields = list(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            try:
                doc = json.loads(raw or b"{}")
                for k, v in doc.items():
                    for item in v if isinstance(v, list) else [v]:
                        fields.append((k, str(item)))
            except (ValueError, AttributeError):
                pass
        else:
            fields += parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        fault = fake._take_fault()
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.delay)
            if self._client_gone():
                fake._record(Request("POST", self.path, fields, 0, b"", arrived, "dropped"))
                self.close_connection = True
                return
            fault = None
        status, body, ctype_out, extra = fake._respond(self.path, fields, fault)
        fake._record(
            Request(
                "POST",
                self.path,
                fields,
                status,
                body[:4096],
                arrived,
                fault.kind if fault else None,
            )
        )
        self._send(status, body, ctype_out, extra)

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str = "application/json; charset=utf-8",
        extra: dict[str, str] | None = None,
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], fake: FakeZammad) -> None:
        self.fake = fake
        super().__init__(addr, _Handler)


class FakeZammad:
    """Thread-safe fake; use as a context manager or start()/stop()."""

    def __init__(
        self,
        token: str = "tok3n",
        *,
        port: int = 0,
        blocked: tuple[str, ...] = (),
        default_caller_id: str = "",
        routing: tuple[tuple[str, str], ...] = (),
        on_request: Callable[[Request], None] | None = None,
    ) -> None:
        self.token = token
        self.blocked = set(blocked)
        self.default_caller_id = default_caller_id
        self.routing = list(routing)
        self.enabled = True
        self.configured = True
        self.keep_bodies = True
        self._on_request = on_request
        self._port = port
        self._lock = threading.Condition()
        self._faults: list[Fault] = []
        self._requests: list[Request] = []
        self._calls: dict[str, CallLog] = {}
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeZammad:
        self.up()
        return self

    def up(self) -> None:
        with self._lock:
            if self._server is not None:
                return
            server = _Server(("127.0.0.1", self._port), self)
            self._port = server.server_address[1]
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()

    def down(self) -> None:
        """Stop listening and cut every open connection: clients see connection refused."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            conns = list(self._conns)
        if server is None:
            return
        server.shutdown()
        server.server_close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(5)

    stop = down

    def __enter__(self) -> FakeZammad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.down()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def url(self, token: str | None = None) -> str:
        return f"{self.base_url}/api/v1/cti/{self.token if token is None else token}"

    # -- faults ------------------------------------------------------------------------------

    def _add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def fail(self, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status`` and an HTML page (not stored)."""
        self._add(Fault("fail", times, status=status))

    def garbage(self, times: int = 1) -> None:
        """200 with a non-JSON body; the request *is* processed (stored)."""
        self._add(Fault("garbage", times))

    def json_array(self, times: int = 1) -> None:
        self._add(Fault("array", times))

    def huge(self, size: int = 8 * 1024 * 1024, times: int = 1) -> None:
        """200 with a ``size``-byte body after processing the request."""
        self._add(Fault("huge", times, size=size))

    def redirect(
        self,
        location: str = "https://elsewhere.example/api/v1/cti/x",
        times: int = 1,
        status: int = 302,
    ) -> None:
        self._add(Fault("redirect", times, status=status, location=location))

    def delay(self, seconds: float, times: int = 1) -> None:
        """Hold the next requests before processing; drop them if the client has gone."""
        self._add(Fault("delay", times, delay=seconds))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self) -> Fault | None:
        with self._lock:
            if not self._faults:
                return None
            f = self._faults[0]
            f.times -= 1
            if f.times <= 0:
                self._faults.pop(0)
            return f

    # -- Zammad's logic ----------------------------------------------------------------------

    def _respond(
        self, path: str, fields: list[tuple[str, str]], fault: Fault | None
    ) -> tuple[int, bytes, str, dict[str, str]]:
        json_ct = "application/json; charset=utf-8"
        if fault is not None and fault.kind == "fail":
            return fault.status, HTML_500, "text/html; charset=utf-8", {}
        if fault is not None and fault.kind == "redirect":
            return fault.status, b"", "text/html", {"Location": fault.location}
        status, doc = self._zammad(path, fields)
        if fault is not None and status == 200:
            if fault.kind == "garbage":
                return 200, b"<html>not json", "text/html", {}
            if fault.kind == "array":
                return 200, b'["surprise"]', json_ct, {}
            if fault.kind == "huge":
                return 200, b"{" + b" " * fault.size + b"}", json_ct, {}
        return status, json.dumps(doc).encode(), json_ct, {}

    def _zammad(self, path: str, fields: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
        p = _fields_dict(fields)
        refused = self._refusal(path, p)
        return refused if refused is not None else self._apply(p)

    def _refusal(self, path: str, p: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """Zammad's checks before it touches the call log, in its order (docs/zammad-cti.md)."""
        m = re.fullmatch(r"/api/v1/cti/([^/?]*)", urlsplit(path).path)
        if m is None:
            return 404, {"error": "No route matches"}
        if not self.enabled:
            return 422, DISABLED
        if not self.configured:
            return 422, NOT_CONFIGURED
        if m.group(1) != self.token:
            return 401, INVALID_TOKEN
        if p.get("direction") not in ("in", "out"):
            return 422, INVALID_DIRECTION
        if p.get("event") not in ("newCall", "answer", "hangup"):
            return 422, error_id()
        return None

    def _apply(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A checked event on the call log: Zammad's rules for duplicates, unknown calls,
        blocked callers, caller-ID routes and what counts as done."""
        direction, event = p["direction"], p["event"]
        cid = p.get("callId", p.get("call_id"))
        user = p.get("user[]", p.get("user"))
        user_s = ", ".join(user) if isinstance(user, list) else user
        with self._lock:
            row = self._calls.get(cid) if cid is not None else None
            answer: dict[str, Any] = {}
            if event == "newCall":
                if not cid or "from" not in p or "to" not in p:
                    return 422, error_id()
                if row is not None:
                    return 500, ALREADY_EXISTS
                frm, to = p["from"], p["to"]
                if direction == "in" and frm in self.blocked:
                    answer = {"action": "reject", "reason": "busy"}
                if direction == "out" and to:
                    caller_id = self._caller_id_for(to)
                    if caller_id:
                        answer = {"action": "dial", "caller_id": caller_id, "number": to}
                        frm = caller_id
                row = CallLog(cid, direction, frm, to, done=direction == "out")
                if user_s is not None:
                    setattr(row, "to_comment" if direction == "in" else "from_comment", user_s)
                self._calls[cid] = row
            elif row is None:
                return 500, error_id()
            elif event == "answer":
                if row.state == "hangup":
                    return 200, {}
                row.state, row.done = "answer", True
                if user_s is not None:
                    row.to_comment = user_s
            else:
                cause = p.get("cause", "")
                row.done = not (
                    direction == "in"
                    and (
                        (row.state == "newCall" and cause != "forwarded")
                        or row.to_comment == "voicemail"
                    )
                )
                row.state = "hangup"
            row.comment = p.get("cause", "")
            row.events.append(p)
            return 200, answer

    def _caller_id_for(self, to: str) -> str:
        for dest, caller_id in self.routing:
            if re.fullmatch(dest.replace("*", ".+?"), to):
                return caller_id
        return self.default_caller_id

    def _record(self, req: Request) -> None:
        with self._lock:
            if not self.keep_bodies:
                req.response = b""
            self._requests.append(req)
            self._lock.notify_all()
        if self._on_request is not None:
            self._on_request(req)

    # -- accessors ---------------------------------------------------------------------------

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def calls(self) -> dict[str, CallLog]:
        with self._lock:
            return dict(self._calls)

    def stored(self, call: str) -> list[str]:
        """Event names Zammad stored for ``call``, in order (empty if unknown)."""
        with self._lock:
            row = self._calls.get(call)
            return [e["event"] for e in row.events] if row else []

    def stored_count(self) -> int:
        with self._lock:
            return sum(len(r.events) for r in self._calls.values())

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._calls.clear()
            self._faults.clear()

    def wait_for(self, predicate: Callable[[FakeZammad], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate(self)`` holds (re-checked after each request) or time out."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                self._lock.release()
                try:
                    if predicate(self):
                        return True
                finally:
                    self._lock.acquire()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.05))

    async def async_wait_for(
        self, predicate: Callable[[FakeZammad], bool], timeout: float = 5.0
    ) -> bool:
        """Like wait_for, without blocking the event loop."""
        import asyncio

        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Fake Zammad Generic CTI endpoint")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default="tok3n")
    ap.add_argument("--blocked", action="append", default=[], help="blocked caller id (repeat)")
    ap.add_argument("--default-caller-id", default="")
    ap.add_argument("--quiet", action="store_true", help="do not print requests")
    args = ap.parse_args(argv)

    out_lock = threading.Lock()

    def show(req: Request) -> None:
        if not args.quiet:
            line = {
                "at": req.at,
                "path": re.sub(r"cti/[^/?]*", "cti/***", req.path),
                "fields": req.fields,
                "status": req.status,
                "response": req.response[:300].decode("utf-8", "replace"),
                "fault": req.fault,
            }
            text = json.dumps(line)
            with out_lock:  # one handler thread per connection: keep lines whole
                print(text, flush=True)

    fake = FakeZammad(
        args.token,
        port=args.port,
        blocked=tuple(args.blocked),
        default_caller_id=args.default_caller_id,
        on_request=show,
    )
    fake.keep_bodies = False
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with fake:
        print(json.dumps({"listening": fake.base_url, "port": fake.port}), flush=True)
        stop.wait()


def call_events(
    call: str,
    *,
    direction: str = "in",
    frm: str = "4930111222",
    to: str = "4930999000",
    answered: bool = True,
    user: str = "Agent Smith",
) -> list[dict[str, Any]]:
    """The newCall/answer/hangup events of one call, as the tracker would emit them."""
    base = {"callId": call, "direction": direction, "from": frm, "to": to}
    events: list[dict[str, Any]] = [{"event": "newCall", **base, "user[]": [user]}]
    if answered:
        events.append({"event": "answer", **base, "user": user, "answeringNumber": "100"})
    events.append({"event": "hangup", **base, "cause": "normalClearing" if answered else "cancel"})
    return events


if __name__ == "__main__":
    main()

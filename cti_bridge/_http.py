"""A lean HTTP/1.1 client for one origin: asyncio protocols and a small keep-alive pool.

Why not httpx: the daemon's throughput is bounded by the CPU each POST costs, and httpx's client
layer (request and response models, header classes, auth and redirect hooks, cookie handling)
cost ~0.45 ms per POST even over a lean transport; this costs ~0.1 ms (bench/post.py). The
daemon talks to exactly one URL with one method and a few fixed headers, so the request head is
built once and each POST only appends its Content-Length and body.

Scope and choices, on purpose:
- HTTP/1.1 to one origin, no redirects (a 3xx is returned as it is), no cookies, no
  compression (``Accept-Encoding: identity`` is the caller's to send).
- An optional HTTP proxy, given explicitly (the environment is not read: a systemd service has
  none of the operator's shell variables): ``https://`` goes through a ``CONNECT`` tunnel with
  TLS to the origin inside it; ``http://`` is sent to the proxy with the absolute URL. The
  proxy's credentials go to the proxy only (never inside the tunnel), as Basic auth.
- One request per connection at a time; at most ``max_connections`` sockets (idle + busy).
- An idle connection the server has closed is noticed *before* anything is written (EOF already
  seen by the loop, or a zero-timeout poll of the socket) and replaced by a fresh one. A failure
  after the request was written is raised with ``sent=True``, never resent: Zammad's call log is
  not idempotent, the caller decides.
- One deadline bounds the whole request: waiting for a free connection, connecting, writing and
  reading the answer. :class:`HttpTimeout` says in which phase it ran out.
- A body longer than ``max_response_bytes`` is cut there: the connection is closed (not drained,
  not pooled) and the response says ``truncated``. The header block is capped at 64 KiB.
- Error texts never name the URL (its path holds the Zammad token) nor the peer's address.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import select
import socket
import ssl
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

import certifi

MAX_HEAD = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})
_HEX = frozenset(b"0123456789abcdefABCDEF")


class HttpError(Exception):
    """A request without a usable answer; ``sent`` is False only if it never left this host."""

    def __init__(self, reason: str, *, sent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent


class ConnectError(HttpError):
    """No connection (refused, unreachable, name lookup, TLS handshake): nothing was sent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, sent=False)


class HttpTimeout(HttpError):
    """The deadline passed; ``phase`` is ``pool``, ``connect``, ``write`` or ``read``."""

    def __init__(self, phase: str) -> None:
        super().__init__(f"{phase} timed out", sent=phase in ("write", "read"))
        self.phase = phase


class ProtocolError(HttpError):
    """The server broke HTTP or the connection after the request was (maybe) written."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, sent=True)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    truncated: bool = False

    def header(self, name: bytes) -> bytes | None:
        """The last value of header ``name`` (lower case), or None."""
        found = None
        for key, value in self.headers:
            if key.lower() == name:
                found = value
        return found


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str  # IDNA-encoded, as DNS and SNI want it; no brackets around IPv6
    port: int
    target: bytes  # path and query, as sent on the request line
    host_header: bytes

    @classmethod
    def parse(cls, url: str, *, schemes: tuple[str, ...] = ("http", "https")) -> Origin:
        """Raises ValueError with a text that does not repeat the URL."""
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in schemes:
            raise ValueError(f"the URL must start with {' or '.join(f'{s}://' for s in schemes)}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("credentials in the URL are not supported")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("the URL's port must be a number from 1 to 65535") from None
        name = parts.hostname or ""
        if not name:
            raise ValueError("the URL has no host")
        try:
            host = name.encode("idna").decode("ascii") if ":" not in name else name
        except UnicodeError:
            raise ValueError("the URL's host name is not valid") from None
        default = 443 if scheme == "https" else 80
        port = port or default
        shown = f"[{host}]" if ":" in host else host
        host_header = shown if port == default else f"{shown}:{port}"
        path = parts.path or "/"
        target = path + (f"?{parts.query}" if parts.query else "")
        try:
            raw_target = target.encode("ascii")
        except UnicodeError:
            raw_target = urllib.parse.quote(target, safe="/?&=%:@!$'()*+,;~").encode("ascii")
        if any(c <= 0x20 or c == 0x7F for c in raw_target):
            raise ValueError("the URL's path holds spaces or control characters")
        return cls(scheme, host, port, raw_target, host_header.encode("ascii"))

    @property
    def authority(self) -> bytes:
        """``host:port`` with the port always given (a CONNECT request's target)."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{shown}:{self.port}".encode("ascii")


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy: ``http://[user:password@]host:port`` (the password is a secret)."""

    origin: Origin
    headers: tuple[bytes, ...]  # Proxy-Authorization, when the URL has credentials

    @classmethod
    def parse(cls, url: str) -> Proxy:
        """Raises ValueError with a text that repeats neither the URL nor its password."""
        parts = urllib.parse.urlsplit(url)
        if parts.path not in ("", "/") or parts.query:
            raise ValueError("a proxy URL is http://[user:password@]host:port, without a path")
        user, password = parts.username, parts.password
        bare = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        origin = Origin.parse(bare, schemes=("http",))
        headers: tuple[bytes, ...] = ()
        if user is not None:
            pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password or '')}"
            token = base64.b64encode(pair.encode("utf-8"))
            headers = (b"Proxy-Authorization: Basic " + token,)
        return cls(origin, headers)


def _why(exc: BaseException) -> str:
    """The reason without the address (asyncio puts ``('host', port)`` in connect errors)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or type(exc).__name__}"
    if isinstance(exc, socket.gaierror):
        return f"name lookup: {exc.strerror}"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return type(exc).__name__


def ssl_context(verify: ssl.SSLContext | bool) -> ssl.SSLContext:
    """The system's CA store by default, where an operator installs a company CA.

    certifi's bundle only when the system store looks empty (a minimal container without the
    ca-certificates package); a store that only names a directory loads lazily and looks
    empty too, which costs nothing worse than using certifi's public CAs.
    """
    if isinstance(verify, ssl.SSLContext):
        ctx = verify
    else:
        ctx = ssl.create_default_context()
        if not ctx.cert_store_stats()["x509_ca"]:
            ctx = ssl.create_default_context(cafile=certifi.where())
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _chunk_size(line: bytes) -> int:
    """The size on a chunk line (extensions ignored); -1 when it is not plain hex digits."""
    digits = line.split(b";", 1)[0].strip()
    if not digits or len(digits) > 16 or not _HEX.issuperset(digits):
        return -1
    return int(digits, 16)


def _parse_head(head: bytes) -> tuple[bytes, int, bytes, tuple[tuple[bytes, bytes], ...]]:
    status_line, *lines = head.split(b"\r\n")
    parts = status_line.split(b" ", 2)
    code = parts[1] if len(parts) > 1 else b""
    if not parts[0].startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise ProtocolError("malformed status line")
    headers = []
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise ProtocolError("malformed response header")
        headers.append((name, value.strip()))
    return parts[0], int(code), parts[2] if len(parts) > 2 else b"", tuple(headers)


# Parser states of one response.
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_EOF = range(7)


class _Conn(asyncio.Protocol):
    """One connection; parses the answer to the one request in flight as bytes arrive."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False  # lost, EOF seen, or data arrived while idle
        self.idle_since = 0.0
        self._buf = bytearray()
        self._waiter: asyncio.Future[tuple[Response, bool]] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._paused = False
        self._head_only = False
        self._reset()

    def _reset(self) -> None:
        self._state = _HEAD
        self._left = 0  # bytes still to take in _LENGTH / _CHUNK_DATA
        self._trailer = 0
        self._body: list[bytes] = []
        self._size = 0
        self._cut = False  # the cap was reached
        self._answer: tuple[bytes, int, bytes, tuple[tuple[bytes, bytes], ...]] | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self._expecting():
            self.closed = True  # an idle HTTP connection must stay silent (e.g. a 408 then close)
            return
        self._buf += data
        try:
            self._parse()
        except HttpError as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        self.closed = True
        if self._expecting():
            if self._state == _UNTIL_EOF:
                self._finish(reusable=False)
            else:
                self._fail(ProtocolError("server closed the connection before a complete answer"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._expecting():
            if self._state == _UNTIL_EOF and exc is None:
                self._finish(reusable=False)
            elif exc is None:
                self._fail(ProtocolError("server closed the connection before a complete answer"))
            else:
                self._fail(ProtocolError(f"connection lost: {_why(exc)}"))
        self._wake_writer()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_writer()

    def _wake_writer(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- one exchange ----------------------------------------------------------------------

    def usable(self, now: float, expiry: float) -> bool:
        """False when the server closed it (or sent anything) while it sat idle."""
        if self.closed or now - self.idle_since > expiry or self.transport is None:
            return False
        if self.transport.is_closing():
            return False
        # The loop may not have run the read callback for a FIN that already arrived (it is busy
        # under load): a zero-timeout poll sees it. An idle HTTP connection must have no data.
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return True
        poller = select.poll()  # not select.select: it fails on descriptors above 1023
        poller.register(sock.fileno(), select.POLLIN)
        return not poller.poll(0)

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)

    async def send(self, data: bytes, *, head_only: bool = False) -> None:
        """Write one request; returns when the transport has room again.

        ``head_only``: the answer has no body whatever its headers say (CONNECT's 2xx).
        """
        assert self.transport is not None and self._waiter is None
        self._reset()
        self._head_only = head_only
        self._buf.clear()
        self._waiter = self._loop.create_future()
        self.transport.write(data)  # errors surface through connection_lost
        if self._paused:  # the kernel did not take it all: wait for room
            self._writable = self._loop.create_future()
            try:
                await self._writable
            finally:
                self._writable = None

    async def answer(self) -> tuple[Response, bool]:
        """The answer to the request sent, and whether the connection may be reused."""
        assert self._waiter is not None
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def _expecting(self) -> bool:
        return self._waiter is not None and not self._waiter.done()

    def _fail(self, exc: HttpError) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def _finish(self, reusable: bool) -> None:
        assert self._answer is not None
        version, status, reason, headers = self._answer
        waiter = self._waiter
        if self._buf:  # more than one answer to one request: something is off, do not reuse
            reusable = False
        if reusable:
            tokens = b",".join(v for k, v in headers if k.lower() == b"connection").lower()
            reusable = version == b"HTTP/1.1" and b"close" not in tokens
        response = Response(status, reason, headers, b"".join(self._body), self._cut)
        if waiter is not None and not waiter.done():
            waiter.set_result((response, reusable))

    def _parse(self) -> None:
        buf = self._buf
        while self._expecting():
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        raise ProtocolError("oversized response header block")
                    return
                if end > MAX_HEAD:
                    raise ProtocolError("oversized response header block")
                answer = _parse_head(bytes(buf[:end]))
                del buf[: end + 4]
                status = answer[1]
                if 100 <= status < 200 and status != 101:
                    continue  # interim answer (100 Continue, 103 Early Hints): the real one follows
                self._answer = answer
                self._frame(status, answer[3])
            elif state in (_LENGTH, _CHUNK_DATA):
                take = min(self._left, len(buf))
                if take:
                    self._body.append(bytes(buf[:take]))
                    del buf[:take]
                    self._left -= take
                if self._left:
                    return
                if state == _LENGTH or self._cut:
                    self._finish(reusable=not self._cut)
                    return
                self._state = _CHUNK_END
            elif state == _CHUNK_END:
                if len(buf) < 2:
                    return
                if buf[:2] != b"\r\n":
                    raise ProtocolError("bad chunk framing")
                del buf[:2]
                self._state = _CHUNK_SIZE
            elif state in (_CHUNK_SIZE, _TRAILER):
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        raise ProtocolError("oversized chunk line")
                    return
                line = bytes(buf[:end])
                del buf[: end + 2]
                if state == _TRAILER:
                    self._trailer += end + 2
                    if not line:
                        self._finish(reusable=True)
                        return
                    if self._trailer > MAX_HEAD:
                        raise ProtocolError("oversized trailer block")
                    continue
                size = _chunk_size(line)
                if size < 0:
                    raise ProtocolError("bad chunk size")
                if size == 0:
                    self._state = _TRAILER
                    continue
                room = self._cap - self._size
                if size > room:
                    self._cut = True
                    size = room
                self._size += size
                self._left = size
                self._state = _CHUNK_DATA
                if not size:
                    self._finish(reusable=False)
                    return
            else:  # _UNTIL_EOF
                take = min(self._cap - self._size, len(buf))
                if take:
                    self._body.append(bytes(buf[:take]))
                    self._size += take
                del buf[:]
                if self._size >= self._cap:
                    self._cut = True
                    self._finish(reusable=False)
                return

    def _frame(self, status: int, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        """Decide how the body is delimited (RFC 9112 section 6.3, in its order)."""
        if status in _NO_BODY_STATUSES or self._head_only:
            self._finish(reusable=True)
            return
        te = [v.lower() for k, v in headers if k.lower() == b"transfer-encoding"]
        if te:
            if te[-1].rsplit(b",", 1)[-1].strip() == b"chunked":
                self._state = _CHUNK_SIZE
                return
            self._state = _UNTIL_EOF
            return
        lengths = {v.strip() for k, v in headers if k.lower() == b"content-length"}
        if not lengths:
            self._state = _UNTIL_EOF  # close-delimited (HTTP/1.0 style)
            return
        (value,) = lengths if len(lengths) == 1 else (b"",)
        if not value.isdigit():
            raise ProtocolError("bad Content-Length")
        length = int(value)
        if length > self._cap:
            self._cut = True
        self._left = min(length, self._cap)
        self._state = _LENGTH
        if not self._left:
            self._finish(reusable=not self._cut)

    def abort(self) -> None:
        self.closed = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None:  # nobody waits for it any more (timeout or cancellation)
            if not waiter.done():
                waiter.cancel()
            elif not waiter.cancelled():
                waiter.exception()  # retrieved: no "never retrieved" warning at collection
        if self.transport is not None:
            self.transport.abort()


class HttpClient:
    """POSTs to one URL over a bounded keep-alive pool (see the module doc)."""

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        verify: ssl.SSLContext | bool = True,
        max_connections: int = 8,
        max_response_bytes: int = 64 * 1024,
        keepalive_expiry: float = 30.0,
        proxy: str | None = None,
    ) -> None:
        self.origin = origin = Origin.parse(url)
        self._proxy = Proxy.parse(proxy) if proxy else None
        fixed = [b"Host: " + origin.host_header]
        for name, value in (headers or {}).items():
            raw = f"{name}: {value}".encode("latin-1")
            if b"\r" in raw or b"\n" in raw or not name or ":" in name:
                raise ValueError(f"header {name!r} holds CR, LF or a colon")
            fixed.append(raw)
        target = origin.target
        if self._proxy is not None and origin.scheme == "http":
            # Plain HTTP through a proxy: the absolute URL on the request line, and the
            # proxy's credentials on every request (an https:// URL tunnels instead).
            target = b"http://" + origin.host_header + origin.target
            fixed += self._proxy.headers
        self._post_head = b"POST %s HTTP/1.1\r\n%s\r\nContent-Length: " % (
            target,
            b"\r\n".join(fixed),
        )
        self._ssl = ssl_context(verify) if origin.scheme == "https" else None
        self._cap = max_response_bytes
        self._expiry = keepalive_expiry
        self._max = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Conn] = []  # oldest first
        self._closed = False

    async def post(self, body: bytes, *, timeout: float | None) -> Response:
        """One POST; raises :class:`HttpError` (a subclass) when no usable answer came back."""
        if self._closed:
            raise RuntimeError("HttpClient is closed")
        data = b"%s%d\r\n\r\n%s" % (self._post_head, len(body), body)
        phase = "pool"
        conn: _Conn | None = None
        reusable = False
        acquired = False
        try:
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
                acquired = True
                phase = "connect"
                conn = self._take_idle() or await self._connect()
                phase = "write"
                await conn.send(data)
                phase = "read"
                response, reusable = await conn.answer()
                return response
        except TimeoutError:
            raise HttpTimeout(phase) from None
        finally:
            if conn is not None:
                if reusable and not self._closed:
                    conn.idle_since = time.monotonic()
                    self._idle.append(conn)
                else:
                    conn.abort()
            if acquired:
                self._slots.release()

    def _take_idle(self) -> _Conn | None:
        """The newest usable idle connection; stale or expired ones are dropped."""
        if not self._idle:
            return None
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.usable(now, self._expiry):
                return conn
            conn.abort()
        return None

    async def _connect(self) -> _Conn:
        proxy = self._proxy
        peer = proxy.origin if proxy is not None else self.origin
        tls = self._ssl if proxy is None else None  # through a proxy: TLS inside the tunnel
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                lambda: _Conn(self._cap),
                peer.host,
                peer.port,
                ssl=tls,
                server_hostname=peer.host if tls else None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(("proxy: " if proxy else "") + _why(exc)) from None
        if proxy is not None and self._ssl is not None:
            try:
                await self._tunnel(conn, proxy)
            except BaseException:
                conn.abort()
                raise
        return conn  # asyncio sets TCP_NODELAY on TCP transports

    async def _tunnel(self, conn: _Conn, proxy: Proxy) -> None:
        """CONNECT through the proxy to the origin, then TLS with the origin inside the tunnel."""
        authority = self.origin.authority
        head = [b"CONNECT %s HTTP/1.1" % authority, b"Host: " + authority, *proxy.headers]
        await conn.send(b"\r\n".join([*head, b"", b""]), head_only=True)
        try:
            answer, _ = await conn.answer()
        except HttpError as exc:
            raise ConnectError(f"proxy: {exc.reason}") from None
        if not 200 <= answer.status < 300:
            hint = " (check the proxy's user and password)" if answer.status == 407 else ""
            raise ConnectError(f"proxy refused the tunnel: HTTP {answer.status}{hint}")
        if conn.pending_bytes or conn.transport is None:
            raise ConnectError("proxy: unexpected data after its answer to CONNECT")
        loop = asyncio.get_running_loop()
        assert self._ssl is not None
        try:
            transport = await loop.start_tls(
                conn.transport, conn, self._ssl, server_hostname=self.origin.host
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(_why(exc)) from None
        if transport is None:  # pragma: no cover - only for a closed transport
            raise ConnectError("proxy closed the tunnel")
        conn.transport = transport

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def aclose(self) -> None:
        """Close idle connections politely (TLS close_notify); busy ones close when they finish."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            if conn.transport is not None:
                conn.transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                while any(not c.closed for c in idle):
                    await asyncio.sleep(0.01)
        for conn in idle:
            conn.abort()  # a no-op for those already closed

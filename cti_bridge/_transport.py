"""A lean HTTP/1.1 transport for ``httpx.AsyncClient``: asyncio streams, a small keep-alive pool.

Why: httpx's default stack (httpcore + anyio + h11) costs ~1.7 ms of CPU per POST, which capped
the daemon at ~280 posts/s. This transport keeps httpx's public API (the client, its exceptions,
its timeouts) and does the wire work with one write per request and one read per header block.

Scope and choices, on purpose:
- HTTP/1.1 only, no proxy support. Beware: with ``trust_env=True`` and a proxy in the
  environment, httpx mounts its *own* proxy transport for those URLs, bypassing this one;
  ZammadClient passes ``trust_env=False``, so every request comes here and goes direct.
- ``verify=True`` uses certifi's CA bundle, as httpx's default transport does.
- One request per connection at a time; at most ``max_connections`` sockets in all (idle + busy).
- An idle connection the server has closed is noticed *before* anything is written (EOF already
  seen by the loop, or a zero-timeout poll of the socket) and replaced by a fresh one. A failure
  after the request was written is raised (``RemoteProtocolError``/``ReadError``), never resent:
  Zammad's call log is not idempotent, the caller decides.
- The ``read`` timeout bounds the whole answer (status line to last body byte), not each socket
  read as in httpcore: the answers here are small, and one timer per request is cheaper.
- A body longer than ``max_response_bytes`` is cut there: the connection is closed (not drained,
  not pooled) and the response carries the first ``max_response_bytes`` bytes.
- Error texts never name the URL (its path holds the Zammad token) nor the peer's address: the
  caller says which server it was talking to (zammad.py shows the redacted URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import ssl
import time
from dataclasses import dataclass

import certifi
import httpx

_Key = tuple[str, str, int]
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(eq=False)
class _Conn:
    key: _Key
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def usable(self, now: float, expiry: float) -> bool:
        """False when the server closed it (or sent anything) while it sat idle."""
        if now - self.idle_since > expiry or self.reader.at_eof() or self.writer.is_closing():
            return False
        # The loop may not have run the read callback for a FIN that already arrived (it is busy
        # under load): a zero-timeout poll sees it. An idle HTTP connection must have no data.
        sock = self.writer.get_extra_info("socket")
        if sock is None:
            return True
        poller = select.poll()  # not select.select: it fails on descriptors above 1023
        poller.register(sock.fileno(), select.POLLIN)
        return not poller.poll(0)

    def abort(self) -> None:
        self.writer.transport.abort()


def _why(exc: OSError) -> str:
    """The reason without the address (asyncio puts ``('host', port)`` in connect errors)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or type(exc).__name__}"
    if isinstance(exc, socket.gaierror):
        return f"name lookup: {exc.strerror}"
    return os.strerror(exc.errno) if exc.errno else type(exc).__name__


def _ssl_context(verify: ssl.SSLContext | bool) -> ssl.SSLContext:
    if isinstance(verify, ssl.SSLContext):
        return verify
    # Same CA store as httpx's own default (certifi), so switching transports changes nothing.
    ctx = ssl.create_default_context(cafile=certifi.where())
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio streams with a bounded keep-alive pool (see the module doc)."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        max_connections: int = 8,
        max_response_bytes: int = 64 * 1024,
        keepalive_expiry: float = 30.0,
    ) -> None:
        self._ssl = _ssl_context(verify)
        self._max_body = max_response_bytes
        self._expiry = keepalive_expiry
        self._slots = asyncio.Semaphore(max_connections)
        self._max = max_connections
        self._idle: list[_Conn] = []  # oldest first
        self._busy = 0
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("LeanTransport is closed")
        timeout = request.extensions.get("timeout", {})
        url = request.url
        host = url.raw_host.decode("ascii")  # IDNA-encoded, as DNS and SNI want it
        key: _Key = (url.scheme, host, url.port or (443 if url.scheme == "https" else 80))
        data = _encode(request, await request.aread())
        if self._slots.locked():  # only a wait needs a timer
            try:
                async with asyncio.timeout(timeout.get("pool")):
                    await self._slots.acquire()
            except TimeoutError:
                raise httpx.PoolTimeout("no free connection in the pool", request=request) from None
        else:
            await self._slots.acquire()
        conn: _Conn | None = None
        reusable = False
        try:
            conn = self._take_idle(key) or await self._connect(key, request, timeout)
            await _send(conn, data, request, timeout.get("write"))
            response, reusable = await self._receive(conn, request, timeout.get("read"))
            return response
        finally:
            if conn is not None:
                self._busy -= 1
                if reusable and not self._closed:
                    conn.idle_since = time.monotonic()
                    self._idle.append(conn)
                else:
                    conn.abort()
            self._slots.release()

    def _take_idle(self, key: _Key) -> _Conn | None:
        """The newest usable idle connection to ``key``; stale or expired ones are dropped."""
        now = time.monotonic()
        for i in range(len(self._idle) - 1, -1, -1):
            conn = self._idle[i]
            if conn.key != key and now - conn.idle_since <= self._expiry:
                continue
            del self._idle[i]
            if conn.key == key and conn.usable(now, self._expiry):
                self._busy += 1
                return conn
            conn.abort()
        if self._idle and len(self._idle) + self._busy >= self._max:
            self._idle.pop(0).abort()  # another origin's idle socket makes room for this one
        return None

    async def _connect(
        self, key: _Key, request: httpx.Request, timeout: dict[str, float | None]
    ) -> _Conn:
        scheme, host, port = key
        tls = self._ssl if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout.get("connect")):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            raise httpx.ConnectTimeout("connect timed out", request=request) from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"connect failed: {_why(exc)}", request=request) from None
        self._busy += 1
        return _Conn(key, reader, writer)

    async def _receive(
        self, conn: _Conn, request: httpx.Request, read_timeout: float | None
    ) -> tuple[httpx.Response, bool]:
        reader = conn.reader
        try:
            async with asyncio.timeout(read_timeout):
                while True:  # skip 1xx interim answers (100 Continue, 103 Early Hints)
                    head = await reader.readuntil(b"\r\n\r\n")
                    version, status, reason, headers = _parse_head(head, request)
                    if not 100 <= status < 200 or status == 101:
                        break
                body, delimited = await self._body(reader, request, status, headers)
        except TimeoutError:
            raise httpx.ReadTimeout("read timed out", request=request) from None
        except asyncio.IncompleteReadError:
            raise httpx.RemoteProtocolError(
                "server closed the connection before a complete answer", request=request
            ) from None
        except asyncio.LimitOverrunError:
            raise httpx.RemoteProtocolError(
                "oversized response header block", request=request
            ) from None
        except OSError as exc:
            raise httpx.ReadError(f"read failed: {_why(exc)}", request=request) from None
        tokens = b",".join(v for k, v in headers if k.lower() == b"connection").lower()
        reusable = delimited and version == b"HTTP/1.1" and b"close" not in tokens and status != 101
        response = httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(body),  # not content=: the client must be able to stream it
            request=request,
            extensions={"http_version": version, "reason_phrase": reason},
        )
        return response, reusable

    async def _body(
        self,
        reader: asyncio.StreamReader,
        request: httpx.Request,
        status: int,
        headers: list[tuple[bytes, bytes]],
    ) -> tuple[bytes, bool]:
        """The body (at most ``max_response_bytes``) and whether the connection can be reused."""
        if request.method == "HEAD" or status in _NO_BODY_STATUSES or status < 200:
            return b"", True
        cap = self._max_body
        te = [v.lower() for k, v in headers if k.lower() == b"transfer-encoding"]
        if te and te[-1].rsplit(b",", 1)[-1].strip() == b"chunked":
            chunks: list[bytes] = []
            size = 0
            while True:
                line = await reader.readuntil(b"\r\n")
                n = _chunk_size(line)
                if n < 0:
                    raise httpx.RemoteProtocolError("bad chunk size", request=request)
                if n == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                        pass
                    return b"".join(chunks), True
                if size + n > cap:
                    chunks.append(await reader.readexactly(cap - size))
                    return b"".join(chunks), False
                chunks.append(await reader.readexactly(n))
                size += n
                if await reader.readexactly(2) != b"\r\n":
                    raise httpx.RemoteProtocolError("bad chunk framing", request=request)
        lengths = {v.strip() for k, v in headers if k.lower() == b"content-length"}
        if lengths:
            (value,) = lengths if len(lengths) == 1 else (b"",)
            if not value.isdigit():
                raise httpx.RemoteProtocolError("bad Content-Length", request=request)
            length = int(value)
            return await reader.readexactly(min(length, cap)), length <= cap
        parts: list[bytes] = []  # close-delimited (HTTP/1.0 style): read until EOF or the cap
        size = 0
        while size < cap and (more := await reader.read(cap - size)):
            parts.append(more)
            size += len(more)
        return b"".join(parts), False

    async def aclose(self) -> None:
        """Close idle connections politely (TLS close_notify); busy ones close when they finish."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.writer.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await asyncio.gather(
                    *(c.writer.wait_closed() for c in idle), return_exceptions=True
                )
        for conn in idle:
            conn.abort()  # a no-op for those already closed


def _encode(request: httpx.Request, body: bytes) -> bytes:
    """Request line, headers and body as one buffer (one write, one TCP segment when small)."""
    raw = request.headers.raw
    line = b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)
    head = b"\r\n".join([line, *(name + b": " + value for name, value in raw), b"", b""])
    # Exactly one CR and one LF per line end: a CR or LF inside a value would inject headers.
    if head.count(b"\r") != len(raw) + 2 or head.count(b"\n") != len(raw) + 2:
        raise httpx.LocalProtocolError("CR/LF in the request line or a header", request=request)
    if any(name.lower() == b"transfer-encoding" for name, _ in raw):
        # A streamed request body: it has been read already; send it as one chunk.
        body = (b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)) if body else b"0\r\n\r\n"
    return head + body


async def _send(
    conn: _Conn, data: bytes, request: httpx.Request, write_timeout: float | None
) -> None:
    try:
        conn.writer.write(data)
        if conn.writer.transport.get_write_buffer_size():  # the kernel did not take it all
            async with asyncio.timeout(write_timeout):
                await conn.writer.drain()
    except TimeoutError:
        raise httpx.WriteTimeout("write timed out", request=request) from None
    except OSError as exc:
        raise httpx.WriteError(f"write failed: {_why(exc)}", request=request) from None


def _parse_head(
    head: bytes, request: httpx.Request
) -> tuple[bytes, int, bytes, list[tuple[bytes, bytes]]]:
    status_line, *lines = head[:-4].split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not _is_status(parts[1]):
        raise httpx.RemoteProtocolError("malformed status line", request=request)
    headers: list[tuple[bytes, bytes]] = []
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise httpx.RemoteProtocolError("malformed response header", request=request)
        headers.append((name, value.strip()))
    reason = parts[2] if len(parts) > 2 else b""
    return parts[0], int(parts[1]), reason, headers


def _is_status(code: bytes) -> bool:
    return len(code) == 3 and code.isdigit()


_HEX = frozenset(b"0123456789abcdefABCDEF")


def _chunk_size(line: bytes) -> int:
    """The size on a chunk line (extensions ignored); -1 when it is not plain hex digits."""
    digits = line.split(b";", 1)[0].strip()
    if not digits or len(digits) > 16 or not _HEX.issuperset(digits):
        return -1
    return int(digits, 16)

"""Raw asyncio HTTP servers on 127.0.0.1 that answer (or misbehave) byte for byte as scripted.

``serve(handler)`` runs a server whose ``handler(peer)`` decides per connection what to read
and write; it counts connections and records every request it read, so a test can prove that
something was (not) sent twice or that one connection carried several requests.
``connect_proxy()`` is a small HTTP proxy: ``CONNECT`` tunnels and absolute-URL forwarding,
both behind Basic auth. ``self_signed()`` makes a throwaway certificate for 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

Handler = Callable[["Peer"], Awaitable[None]]


def ok(body: bytes) -> bytes:
    """A 200 JSON answer with ``body``."""
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


@dataclass
class Peer:
    """One accepted connection; ``request()`` reads one request (head + Content-Length body)."""

    server: RawServer
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def request(self) -> bytes | None:
        """The next request, recorded; None when the client closed the connection."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            raw = head + await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        self.server.requests.append(raw)
        return raw

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()
        self.server.sent += len(data)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@dataclass
class RawServer:
    handler: Handler
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    sent: int = 0  # body bytes handed to the kernel, all connections
    port: int = 0
    tasks: set[asyncio.Task[object]] = field(default_factory=set)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        self.connections += 1
        self.open_now += 1
        try:
            await self.handler(Peer(self, reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # cancelled: the test is over (asyncio 3.11 logs a cancelled handler task)
        finally:
            self.open_now -= 1
            writer.close()

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    @property
    def heads(self) -> list[bytes]:
        return [r.partition(b"\r\n\r\n")[0] for r in self.requests]


@contextlib.asynccontextmanager
async def serve(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[RawServer]:
    srv = RawServer(handler)
    server = await asyncio.start_server(srv._serve, "127.0.0.1", 0, ssl=tls)
    srv.port = server.sockets[0].getsockname()[1]
    try:
        yield srv
    finally:
        server.close()
        for task in srv.tasks:  # handlers still waiting or writing: the test is over
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await server.wait_closed()


def answer_each(response: bytes, delay: float = 0.0) -> Handler:
    """Keep-alive server: the same answer to every request on the connection."""

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            if delay:
                await asyncio.sleep(delay)
            await peer.send(response)

    return handler


def answer_then(response: bytes, *, pieces: bytes = b"", count: int = 0) -> Handler:
    """One request answered with ``response``, then ``count`` times ``pieces`` (bounded)."""

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(response)
        for _ in range(count):
            await peer.send(pieces)

    return handler


async def until(condition: Callable[[], bool], limit: float = 2.0) -> None:
    """Wait for the server side to catch up (bounded); TimeoutError if it never does."""
    async with asyncio.timeout(limit):
        while not condition():
            await asyncio.sleep(0.005)


# --- TLS ---------------------------------------------------------------------------------------


def self_signed(tmp: Path) -> tuple[Path, Path] | None:
    """Certificate and key for 127.0.0.1 made by the openssl tool; None without it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


# --- an HTTP proxy -----------------------------------------------------------------------------

PROXY_USER, PROXY_PASSWORD = "squid", "pr0xy-s3cret"
PROXY_AUTH = b"Proxy-Authorization: Basic " + base64.b64encode(
    f"{PROXY_USER}:{PROXY_PASSWORD}".encode()
)


@dataclass
class Proxy:
    """Wants ``PROXY_AUTH``; pipes ``CONNECT`` tunnels, forwards absolute-URL requests."""

    heads: list[bytes] = field(default_factory=list)  # what the proxy itself read
    tunnels: int = 0
    port: int = 0

    def url(self, credentials: str = f"{PROXY_USER}:{PROXY_PASSWORD}@") -> str:
        return f"http://{credentials}127.0.0.1:{self.port}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            method, target, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
            if PROXY_AUTH not in head.split(b"\r\n"):
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b"Proxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n"
                )
                return
            if method == b"CONNECT":
                host, _, port = target.rpartition(b":")
                first = b""
                up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
                self.tunnels += 1
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:  # forward: origin-form to the origin, without the proxy's credentials
                authority, _, path = target.removeprefix(b"http://").partition(b"/")
                host, _, port = authority.rpartition(b":")
                up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
                lines = [line for line in head.split(b"\r\n")[1:] if not line.startswith(b"Proxy-")]
                first = b"\r\n".join([b"%s /%s HTTP/1.1" % (method, path), *lines])
            up_writer.write(first)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    dst.close()


@contextlib.asynccontextmanager
async def proxy_server() -> AsyncIterator[Proxy]:
    proxy = Proxy()
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()

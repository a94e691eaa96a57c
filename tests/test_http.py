"""HttpClient against raw asyncio servers on 127.0.0.1 that answer byte for byte as scripted."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cti_bridge._http import (
    ConnectError,
    HttpClient,
    HttpError,
    HttpTimeout,
    Origin,
    ProtocolError,
    Proxy,
    Response,
)

TOKEN = "Tok-4f9a8b7c6d"
PATH = f"/api/v1/cti/{TOKEN}"
FORM = urllib.parse.urlencode(
    {"event": "newCall", "direction": "in", "callId": "c1", "from": "4930", "to": "100"}
).encode()
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

Handler = Callable[["Peer"], Awaitable[None]]


@dataclass
class Peer:
    """One accepted connection; ``request()`` reads one request (head + Content-Length body)."""

    server: RawServer
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def request(self) -> bytes | None:
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        raw = head + await self.reader.readexactly(length)
        self.server.requests.append(raw)
        return raw

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


@dataclass
class RawServer:
    handler: Handler
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    open_max: int = 0
    port: int = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.open_max = max(self.open_max, self.open_now)
        try:
            await self.handler(Peer(self, reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open_now -= 1
            writer.close()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{PATH}"


@contextlib.asynccontextmanager
async def serve(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[RawServer]:
    srv = RawServer(handler)
    server = await asyncio.start_server(srv._serve, "127.0.0.1", 0, ssl=tls)
    srv.port = server.sockets[0].getsockname()[1]
    try:
        yield srv
    finally:
        server.close()
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


async def until(condition: Callable[[], bool], limit: float = 2.0) -> None:
    """Wait for the server side to catch up (bounded); fail if it never does."""
    async with asyncio.timeout(limit):
        while not condition():
            await asyncio.sleep(0.005)


class Client:
    """An HttpClient with the test's deadline, the way ZammadClient uses one."""

    def __init__(self, http: HttpClient, timeout: float) -> None:
        self.http = http
        self.timeout = timeout

    async def post(self, body: bytes = FORM, timeout: float | None = None) -> Response:
        return await self.http.post(body, timeout=timeout or self.timeout)


@contextlib.asynccontextmanager
async def client(
    srv: RawServer, timeout: float = 2.0, scheme: str = "http", **kw: object
) -> AsyncIterator[Client]:
    http = HttpClient(
        srv.url(scheme),
        headers={
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        **kw,  # type: ignore[arg-type]
    )
    try:
        yield Client(http, timeout)
    finally:
        await http.aclose()


async def test_keep_alive_reuses_one_connection_and_sends_one_clean_request() -> None:
    async with serve(answer_each(OK)) as srv, client(srv) as c:
        for _ in range(20):
            resp = await c.post()
            assert resp.status == 200 and json.loads(resp.body) == {}
            assert resp.reason == b"OK" and not resp.truncated
            assert resp.header(b"content-type") == b"application/json"
    assert srv.connections == 1 and len(srv.requests) == 20
    head, _, body = srv.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == f"POST {PATH} HTTP/1.1".encode()
    assert f"Host: 127.0.0.1:{srv.port}".encode() in lines
    assert b"Content-Type: application/x-www-form-urlencoded" in lines
    assert b"Content-Length: %d" % len(body) in lines
    assert len(lines) == 5  # request line, Host, the two given headers, Content-Length
    assert body == b"event=newCall&direction=in&callId=c1&from=4930&to=100"


async def test_chunked_body_with_extension_and_trailer() -> None:
    resp_bytes = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5;ext=1\r\n{"a":\r\n2\r\n1}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    async with serve(answer_each(resp_bytes)) as srv, client(srv) as c:
        for _ in range(3):
            assert json.loads((await c.post()).body) == {"a": 1}
    assert srv.connections == 1  # a complete chunked body keeps the connection


async def test_close_delimited_body() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 5000)
        peer.writer.close()

    async with serve(handler) as srv, client(srv) as c:
        for _ in range(2):
            assert (await c.post()).body == b"x" * 5000
    assert srv.connections == 2


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\n\r\n",
    ],
    ids=["close", "close-in-list", "http-1.0", "extra-bytes"],
)
async def test_connection_close_is_honoured(response: bytes) -> None:
    # The server keeps its side open: only the client's decision makes a new connection.
    async with serve(answer_each(response)) as srv, client(srv) as c:
        for _ in range(3):
            assert (await c.post()).body == b"{}"
    assert srv.connections == 3 and len(srv.requests) == 3


@pytest.mark.parametrize("loop_saw_close", [True, False])
async def test_idle_connection_closed_by_server_is_replaced(loop_saw_close: bool) -> None:
    closed = asyncio.Event()

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)
        peer.writer.close()  # an idle keep-alive timeout, without saying Connection: close
        await peer.writer.wait_closed()
        closed.set()

    async with serve(handler) as srv, client(srv) as c:
        assert (await c.post()).status == 200
        await closed.wait()
        if loop_saw_close:
            await asyncio.sleep(0.05)
        else:
            time.sleep(0.05)  # the FIN is in the kernel; the loop has not read it yet
        assert (await c.post()).status == 200
    assert srv.connections == 2
    assert len(srv.requests) == 2  # nothing was sent twice


async def test_idle_connection_that_speaks_is_not_reused() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)
        # Unsolicited, as a server about to time the connection out may do; it stays open.
        await peer.send(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
        await peer.request()
        await peer.send(OK)

    async with serve(handler) as srv, client(srv) as c:
        assert (await c.post()).status == 200
        await asyncio.sleep(0.05)
        assert (await c.post()).status == 200  # not the stale 408
    assert srv.connections == 2


@pytest.mark.parametrize("reused", [False, True])
async def test_request_read_then_dropped_is_not_resent(reused: bool) -> None:
    async def handler(peer: Peer) -> None:
        if reused:
            await peer.request()
            await peer.send(OK)
        await peer.request()
        # Gone after reading: Zammad may have stored it, so the client must not send it again.

    async with serve(handler) as srv, client(srv) as c:
        if reused:
            await c.post()
        with pytest.raises(ProtocolError) as info:
            await c.post()
        await asyncio.sleep(0.05)
    assert srv.connections == 1
    assert len(srv.requests) == (2 if reused else 1)
    assert info.value.sent and "closed" in info.value.reason


async def test_read_timeout() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await asyncio.sleep(5)

    async with serve(handler) as srv, client(srv, timeout=0.2) as c:
        t0 = time.monotonic()
        with pytest.raises(HttpTimeout) as info:
            await c.post()
        assert time.monotonic() - t0 < 1.0
    assert info.value.phase == "read" and info.value.sent
    assert TOKEN not in str(info.value)


async def test_write_timeout() -> None:
    stop = asyncio.Event()

    async def handler(peer: Peer) -> None:
        await stop.wait()  # never reads: the client's socket buffers fill up

    async with serve(handler) as srv, client(srv, timeout=0.3) as c:
        with pytest.raises(HttpTimeout) as info:
            await c.post(b"x" * (64 * 1024 * 1024))
        stop.set()
    assert info.value.phase == "write" and info.value.sent
    assert TOKEN not in str(info.value)


async def failed_post(port: int, timeout: float) -> HttpError:
    """The error a one-off client's POST to 127.0.0.1:``port`` raised."""
    http = HttpClient(f"http://127.0.0.1:{port}{PATH}")
    try:
        await http.post(FORM, timeout=timeout)
    except HttpError as exc:
        return exc
    finally:
        await http.aclose()
    raise AssertionError("the POST succeeded")


async def test_connect_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = await failed_post(port, timeout=2.0)
    assert isinstance(err, ConnectError)
    assert "refused" in str(err).lower() and not err.sent
    assert TOKEN not in str(err) and "127.0.0.1" not in str(err)


async def test_connect_timeout_says_nothing_was_sent() -> None:
    # A listening socket whose accept queue is full: the SYN is never answered.
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        port = lsock.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):  # fill the backlog (its size is rounded up by the kernel)
                f = socket.socket()
                f.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    f.connect(("127.0.0.1", port))
                fillers.append(f)
            err = await failed_post(port, timeout=0.3)
        finally:
            for f in fillers:
                f.close()
    assert isinstance(err, HttpTimeout) and err.phase == "connect" and not err.sent


async def test_pool_bound_under_concurrency() -> None:
    async with serve(answer_each(OK, delay=0.01)) as srv, client(srv, max_connections=3) as c:
        results = await asyncio.gather(*(c.post() for _ in range(30)))
    assert all(r.status == 200 for r in results)
    assert len(srv.requests) == 30
    assert srv.open_max <= 3 and srv.connections <= 3


async def test_expired_idle_connection_is_closed_not_reused() -> None:
    async with serve(answer_each(OK)) as srv, client(srv, keepalive_expiry=0.05) as c:
        await c.post()
        await asyncio.sleep(0.1)
        await c.post()
        await until(lambda: srv.open_now == 1)  # the expired socket was closed, not left open
        assert srv.connections == 2


async def test_pool_timeout() -> None:
    async with serve(answer_each(OK, delay=0.5)) as srv, client(srv, max_connections=1) as c:
        slow = asyncio.create_task(c.post())
        await until(lambda: len(srv.requests) == 1)  # it holds the only connection
        with pytest.raises(HttpTimeout) as info:
            await c.post(timeout=0.1)
        assert info.value.phase == "pool" and not info.value.sent
        assert (await slow).status == 200
    assert len(srv.requests) == 1


def _endless(head: bytes, piece: bytes) -> Handler:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(head)
        for _ in range(2000):  # bounded: 2000 pieces, far beyond the cap
            await peer.send(piece)

    return handler


@pytest.mark.parametrize(
    ("head", "piece"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n", b"y" * 4096),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"1000\r\n%s\r\n" % (b"y" * 4096),
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n", b"y" * 4096),
    ],
    ids=["content-length", "chunked", "close-delimited"],
)
async def test_huge_body_is_capped_and_connection_dropped(head: bytes, piece: bytes) -> None:
    async with (
        serve(_endless(head, piece)) as srv,
        client(srv, max_response_bytes=10_000) as c,
    ):
        for _ in range(2):
            resp = await c.post()
            assert resp.body == b"y" * 10_000 and resp.truncated
    assert srv.connections == 2  # the capped connection was not pooled


@pytest.mark.parametrize(
    "response",
    [
        b"SPDY/9 200 OK\r\n\r\n",
        b"HTTP/1.1 2xx OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
        b"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"h" * 100_000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 100_000,
    ],
    ids=[
        "version",
        "status",
        "header",
        "two-lengths",
        "chunk-size",
        "negative-chunk",
        "chunk-framing",
        "short-status",
        "short-body",
        "huge-head",
        "huge-chunk-line",
    ],
)
async def test_malformed_answers_raise_without_the_token(response: bytes) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(response)

    async with serve(handler) as srv, client(srv) as c:
        with pytest.raises(ProtocolError) as info:
            await c.post()
    assert TOKEN not in str(info.value) and "/api/" not in str(info.value)


async def test_redirect_is_returned_untouched() -> None:
    resp_bytes = (
        b"HTTP/1.1 302 Found\r\nLocation: https://elsewhere.example/login\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    async with serve(answer_each(resp_bytes)) as srv, client(srv) as c:
        resp = await c.post()
    assert resp.status == 302
    assert resp.header(b"location") == b"https://elsewhere.example/login"
    assert len(srv.requests) == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Evil", "a\r\nInjected: 1"),
        ("X-Evil", "a\nInjected: 1"),
        ("X-Evil", "a\rb"),
        ("A:B", "c"),
    ],
)
def test_header_injection_is_refused_when_built(name: str, value: str) -> None:
    with pytest.raises(ValueError, match="CR, LF or a colon"):
        HttpClient(f"http://127.0.0.1:9{PATH}", headers={name: value})


@pytest.mark.parametrize(
    ("parse", "url", "why", "hidden"),
    [
        (Origin.parse, "ftp://host/x", "http:// or https://", "host/"),
        (Origin.parse, "http:///x", "no host", "///"),
        (Origin.parse, "http://host:99999/x", "port", "host"),
        (Origin.parse, "http://user:pw@host/x", "credentials", "user:pw"),
        (Origin.parse, "http://host/a b", "spaces or control", "a b"),
        (Proxy.parse, "https://proxy:3128", "http://", "proxy:3128"),
        (Proxy.parse, "socks5://proxy:1080", "http://", "proxy"),
        (Proxy.parse, "http://u:secretpw@proxy:3128/path", "without a path", "secretpw"),
        (Proxy.parse, "http://u:secretpw@:3128", "no host", "secretpw"),
    ],
)
def test_unusable_urls_are_refused_without_echoing_them(
    parse: Callable[[str], object], url: str, why: str, hidden: str
) -> None:
    with pytest.raises(ValueError, match=why) as info:
        parse(url)
    assert hidden not in str(info.value)


@pytest.mark.parametrize(
    ("url", "host", "port", "target", "host_header"),
    [
        ("https://zammad.example/api/v1/cti/t", "zammad.example", 443, b"/api/v1/cti/t",
         b"zammad.example"),
        ("http://Zammad.Example:8080/x?y=1", "zammad.example", 8080, b"/x?y=1",
         b"zammad.example:8080"),
        ("http://[::1]:3000/cti", "::1", 3000, b"/cti", b"[::1]:3000"),
        ("https://bücher.example/cti/ä", "xn--bcher-kva.example", 443, b"/cti/%C3%A4",
         b"xn--bcher-kva.example"),
        ("http://host", "host", 80, b"/", b"host"),
    ],
)  # fmt: skip
def test_origin_parsing(url: str, host: str, port: int, target: bytes, host_header: bytes) -> None:
    origin = Origin.parse(url)
    assert (origin.host, origin.port, origin.target, origin.host_header) == (
        host,
        port,
        target,
        host_header,
    )


async def test_interim_100_continue_is_skipped() -> None:
    async with (
        serve(answer_each(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)) as srv,
        client(srv) as c,
    ):
        for _ in range(2):
            assert (await c.post()).status == 200
    assert srv.connections == 1


@pytest.mark.parametrize("status", [204, 304])
async def test_bodyless_statuses_keep_the_connection(status: int) -> None:
    async with (
        serve(answer_each(b"HTTP/1.1 %d X\r\n\r\n" % status)) as srv,
        client(srv) as c,
    ):
        for _ in range(2):
            assert (await c.post()).status == status
    assert srv.connections == 1


async def test_cancelled_request_frees_its_slot() -> None:
    async with serve(answer_each(OK, delay=0.3)) as srv, client(srv, max_connections=1) as c:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await c.post()
        assert (await c.post()).status == 200
    assert srv.connections == 2  # the interrupted connection was not reused


async def test_closed_client_refuses_and_closes_idle_sockets() -> None:
    async with serve(answer_each(OK)) as srv:
        http = HttpClient(srv.url())
        await http.post(FORM, timeout=2.0)
        assert http.idle_connections == 1
        await http.aclose()
        await until(lambda: srv.open_now == 0)
        with pytest.raises(RuntimeError):
            await http.post(FORM, timeout=2.0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=3000),
    cuts=st.lists(st.integers(1, 700), max_size=8),
    segment=st.integers(1, 600),
    framing=st.sampled_from(["chunked", "length", "close"]),
    cap=st.sampled_from([1000, 64 * 1024]),
)
def test_any_framing_and_segmentation_round_trips(
    body: bytes, cuts: list[int], segment: int, framing: str, cap: int
) -> None:
    if framing == "chunked":
        pieces, rest = [], body
        for n in cuts:
            pieces.append(rest[:n])
            rest = rest[n:]
        pieces = [p for p in [*pieces, rest] if p]
        framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + framed
    elif framing == "length":
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    else:
        answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body
    # Close-delimited: at exactly the cap the client cannot know whether more was coming.
    cut = len(body) >= cap if framing == "close" else len(body) > cap

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            for i in range(0, len(answer), segment):  # arbitrary TCP segment boundaries
                await peer.send(answer[i : i + segment])
            if framing == "close":
                break

    async def run() -> None:
        async with serve(handler) as srv, client(srv, max_response_bytes=cap) as c:
            for _ in range(2):
                resp = await c.post()
                assert resp.body == body[:cap] and resp.truncated == cut
        reused = framing != "close" and not cut
        assert srv.connections == (1 if reused else 2)

    asyncio.run(run())


# --- TLS ---------------------------------------------------------------------------------------


def _self_signed(tmp: Path) -> tuple[Path, Path] | None:
    """A certificate for 127.0.0.1 from ``cryptography`` or, failing that, the openssl tool."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            return None
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
             "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        return cert, key
    pkey = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    crt = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pkey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(pkey, hashes.SHA256())
    )
    cert.write_bytes(crt.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        pkey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    files = _self_signed(tmp_path)
    if files is None:
        pytest.skip("TLS test needs the cryptography package or the openssl tool; neither found")
    return files


async def test_tls_keep_alive_and_verification(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    async with serve(answer_each(OK), tls=server_ctx) as srv:
        trusting = ssl.create_default_context(cafile=str(cert))
        async with client(srv, scheme="https", verify=trusting) as c:
            for _ in range(3):
                assert json.loads((await c.post()).body) == {}
        assert srv.connections == 1
        # The default CA store refuses the self-signed certificate.
        async with client(srv, scheme="https") as c:
            with pytest.raises(ConnectError) as info:
                await c.post()
        assert "certificate" in str(info.value).lower() and TOKEN not in str(info.value)
        assert not info.value.sent
        async with client(srv, scheme="https", verify=False) as c:
            assert (await c.post()).status == 200
    assert len(srv.requests) == 4


# --- through an HTTP proxy ------------------------------------------------------------------


PROXY_AUTH = b"Proxy-Authorization: Basic " + base64.b64encode(b"squid:pr0xy-s3cret")


@dataclass
class TunnelProxy:
    """A CONNECT proxy on 127.0.0.1 that wants ``PROXY_AUTH`` and pipes the tunnel both ways."""

    heads: list[bytes] = field(default_factory=list)
    tunnels: int = 0
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            _, target, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
            if PROXY_AUTH not in head.split(b"\r\n"):
                body = b"auth needed"
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                return
            host, _, port = target.rpartition(b":")
            up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
            self.tunnels += 1
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                with contextlib.suppress(ConnectionError):
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    def url(self, credentials: str = "squid:pr0xy-s3cret@") -> str:
        return f"http://{credentials}127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def tunnel_proxy() -> AsyncIterator[TunnelProxy]:
    proxy = TunnelProxy()
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()


async def test_https_through_a_connect_proxy(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))
    async with serve(answer_each(OK), tls=server_ctx) as srv, tunnel_proxy() as proxy:
        async with client(srv, scheme="https", verify=trusting, proxy=proxy.url()) as c:
            for _ in range(3):
                assert json.loads((await c.post()).body) == {}
        assert proxy.tunnels == 1 and srv.connections == 1  # one tunnel, kept alive
        connect = proxy.heads[0].split(b"\r\n")
        assert connect[0] == b"CONNECT 127.0.0.1:%d HTTP/1.1" % srv.port
        assert PROXY_AUTH in connect
        # Inside the tunnel: origin-form requests, and the proxy's password stays outside.
        assert all(r.startswith(f"POST {PATH} HTTP/1.1".encode()) for r in srv.requests)
        assert not any(b"Proxy-Authorization" in r for r in srv.requests)


async def test_proxy_refusal_and_absence_are_connect_errors() -> None:
    async with serve(answer_each(OK)) as srv, tunnel_proxy() as proxy:
        async with client(srv, scheme="https", proxy=proxy.url("squid:wrong@")) as c:
            with pytest.raises(ConnectError) as refused:
                await c.post()
        assert "HTTP 407" in str(refused.value) and "password" in str(refused.value)
        assert not refused.value.sent and "wrong" not in str(refused.value)
        assert srv.requests == []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        gone = s.getsockname()[1]
    http = HttpClient(f"https://127.0.0.1:9{PATH}", proxy=f"http://u:pw@127.0.0.1:{gone}")
    try:
        with pytest.raises(ConnectError, match=r"^proxy: .*refused") as down:
            await http.post(FORM, timeout=2.0)
    finally:
        await http.aclose()
    assert not down.value.sent


async def test_plain_http_through_a_proxy_uses_the_absolute_url() -> None:
    # The "proxy" here answers itself: what matters is the request line and the credentials.
    async with serve(answer_each(OK)) as proxy:
        http = HttpClient(
            f"http://zammad.example:3000{PATH}",
            proxy=f"http://squid:pr0xy-s3cret@127.0.0.1:{proxy.port}",
        )
        try:
            assert (await http.post(FORM, timeout=2.0)).status == 200
        finally:
            await http.aclose()
    lines = proxy.requests[0].split(b"\r\n")
    assert lines[0] == f"POST http://zammad.example:3000{PATH} HTTP/1.1".encode()
    assert b"Host: zammad.example:3000" in lines and PROXY_AUTH in lines

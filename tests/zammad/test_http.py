"""ZammadClient's HTTP behaviour (httpx underneath) against raw loopback servers and proxies.

What matters to the delivery loop: a POST that may have reached Zammad is never sent twice, a
failure says whether it may have (``maybe_processed``), answers are read only up to MAX_BODY,
redirects are not followed, and no text leaks the token, the proxy password or the peer.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cti_bridge.config import Secret, ZammadConfig
from cti_bridge.demo.zammad import call_events
from cti_bridge.zammad import (
    MAX_BODY,
    NO_ACTION,
    ZammadClient,
    ZammadRejected,
    ZammadUnavailable,
)
from tests.support.raw_http import (
    OK,
    PROXY_AUTH,
    PROXY_PASSWORD,
    Peer,
    answer_each,
    answer_then,
    proxy_server,
    self_signed,
    serve,
    server_tls,
    until,
)

TOKEN = "Tok-4f9a8b7c6d"
PATH = f"/api/v1/cti/{TOKEN}"
EVENT = call_events("c1")[0]


def zcfg(url: str, timeout: float = 2.0, **kw: Any) -> ZammadConfig:
    return ZammadConfig(url=Secret(url), timeout=timeout, **kw)


def leak_free(text: str) -> bool:
    return TOKEN not in text and PROXY_PASSWORD not in text and "127.0.0.1" not in text


async def failure(client: ZammadClient, event: Any = EVENT) -> ZammadUnavailable:
    with pytest.raises(ZammadUnavailable) as info:
        await client.post(event)
    assert leak_free(str(info.value))
    return info.value


# --- the request and the keep-alive pool -------------------------------------------------------


async def test_one_connection_for_sequential_posts_and_the_request_as_sent() -> None:
    cookie = b"Set-Cookie: _zammad_session=abc; path=/\r\n"
    async with (
        serve(answer_each(OK.replace(b"\r\n\r\n", b"\r\n" + cookie + b"\r\n"))) as srv,
        ZammadClient(zcfg(srv.url(PATH))) as c,
    ):
        for _ in range(20):
            assert await c.post(EVENT) == NO_ACTION
    assert srv.connections == 1 and len(srv.requests) == 20
    lines = srv.heads[-1].split(b"\r\n")
    assert lines[0] == f"POST {PATH} HTTP/1.1".encode()
    for header in (
        f"Host: 127.0.0.1:{srv.port}",
        "Accept: application/json",
        "Accept-Encoding: identity",
        "Content-Type: application/x-www-form-urlencoded",
        "User-Agent: cti-bridge",
    ):
        assert header.lower().encode() in [line.lower() for line in lines]
    assert not any(line.lower().startswith(b"cookie") for line in lines)  # no session rides along


async def test_pool_bound_under_concurrency() -> None:
    async with (
        serve(answer_each(OK, delay=0.01)) as srv,
        ZammadClient(zcfg(srv.url(PATH)), max_connections=3) as c,
    ):
        opened = 0

        async def post() -> None:
            nonlocal opened
            await c.post(EVENT)
            opened = max(opened, srv.open_now)

        await asyncio.gather(*(post() for _ in range(30)))
    assert len(srv.requests) == 30 and srv.connections <= 3 and opened <= 3


async def test_cancelled_post_frees_its_connection_slot() -> None:
    async with (
        serve(answer_each(OK, delay=0.3)) as srv,
        ZammadClient(zcfg(srv.url(PATH)), max_connections=1) as c,
    ):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await c.post(EVENT)
        assert await c.post(EVENT) == NO_ACTION
    assert srv.connections == 2  # the interrupted connection was not reused


# --- never twice ---------------------------------------------------------------------------------
# httpcore resends only on ConnectionNotAvailable, which its HTTP/1.1 connection raises before
# writing a byte (the pooled connection was busy or closed); an idle connection that the server
# closed is seen as readable and dropped before it is handed out.


@pytest.mark.parametrize("loop_saw_close", [True, False])
async def test_idle_connection_closed_by_server_is_replaced(loop_saw_close: bool) -> None:
    closed = asyncio.Event()

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)
        await peer.close()  # an idle keep-alive timeout, without saying Connection: close
        closed.set()

    async with serve(handler) as srv, ZammadClient(zcfg(srv.url(PATH))) as c:
        await c.post(EVENT)
        await closed.wait()
        if loop_saw_close:
            await asyncio.sleep(0.05)
        else:
            time.sleep(0.05)  # the FIN is in the kernel; the loop has not read it yet
        assert await c.post(EVENT) == NO_ACTION
    assert srv.connections == 2
    assert len(srv.requests) == 2  # each POST went out exactly once


@pytest.mark.parametrize("reused", [False, True])
async def test_request_read_then_dropped_is_not_resent(reused: bool) -> None:
    async def handler(peer: Peer) -> None:
        if reused:
            await peer.request()
            await peer.send(OK)
        await peer.request()
        # Gone after reading: Zammad may have stored it, so the client must not send it again.

    async with serve(handler) as srv, ZammadClient(zcfg(srv.url(PATH))) as c:
        if reused:
            await c.post(EVENT)
        err = await failure(c)
        await asyncio.sleep(0.05)  # a resend, if any, would arrive now
    assert err.maybe_processed and err.status_code is None
    assert srv.connections == 1 and len(srv.requests) == (2 if reused else 1)


@pytest.mark.parametrize(
    "response",
    [
        b"SPDY/9 200 OK\r\n\r\n",
        b"HTTP/1.1 2xx OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"h" * 200_000 + b"\r\n\r\n",  # httpcore: 100 KiB
    ],
    ids=["version", "status", "header", "two-lengths", "chunk-size", "short-body", "huge-head"],
)
async def test_malformed_answers_may_have_been_processed(response: bytes) -> None:
    async with serve(answer_then(response)) as srv, ZammadClient(zcfg(srv.url(PATH))) as c:
        err = await failure(c)
    assert err.maybe_processed and "/api/" not in str(err)
    assert len(srv.requests) == 1


# --- answers: capped, not followed -----------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "piece"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n", b"y" * 4096),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
         b"1000\r\n%s\r\n" % (b"y" * 4096)),
        (b"HTTP/1.1 200 OK\r\n\r\n", b"y" * 4096),
    ],
    ids=["content-length", "chunked", "close-delimited"],
)  # fmt: skip
async def test_huge_answer_is_capped_and_its_connection_dropped(head: bytes, piece: bytes) -> None:
    # 2000 pieces (8 MB) per answer: reading one whole would not fit the 5 s bound below.
    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(head)
            for _ in range(2000):
                await peer.send(piece)

    async with serve(handler) as srv, ZammadClient(zcfg(srv.url(PATH))) as c:
        async with asyncio.timeout(5):
            for _ in range(2):
                assert await c.post(EVENT) == NO_ACTION  # not JSON once cut: delivered
        await until(lambda: srv.open_now == 0)  # both capped connections closed, not pooled
    assert srv.connections == 2 and len(srv.requests) == 2
    assert srv.sent < 2 * 2000 * len(piece)


async def test_answer_of_exactly_max_body_keeps_the_connection() -> None:
    body = b"{" + b" " * (MAX_BODY - 2) + b"}"
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    async with serve(answer_each(answer)) as srv, ZammadClient(zcfg(srv.url(PATH))) as c:
        for _ in range(2):
            assert await c.post(EVENT) == NO_ACTION
    assert srv.connections == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_not_followed(status: int) -> None:
    answer = (
        b"HTTP/1.1 %d Moved\r\nLocation: https://127.0.0.1:1/login?next=/api/v1/cti/%s\r\n"
        b"Content-Length: 0\r\n\r\n" % (status, TOKEN.encode())
    )
    async with serve(answer_each(answer)) as srv, ZammadClient(zcfg(srv.url(PATH))) as c:
        with pytest.raises(ZammadRejected) as info:
            await c.post(EVENT)
    assert info.value.status_code == status and f"HTTP {status} redirect" in str(info.value)
    assert TOKEN not in str(info.value)
    assert len(srv.requests) == 1


# --- timeouts, one per phase -----------------------------------------------------------------


async def test_read_timeout_may_have_been_processed() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await asyncio.sleep(5)

    async with serve(handler) as srv, ZammadClient(zcfg(srv.url(PATH), 0.2)) as c:
        err = await failure(c)
    assert err.reason == "timeout (read)" and err.maybe_processed


async def test_write_timeout_may_have_been_processed() -> None:
    stop = asyncio.Event()

    async def handler(peer: Peer) -> None:
        await stop.wait()  # never reads: the client's socket buffers fill up

    # 16 MB: more than the loopback send and receive buffers hold (4 MB + 6 MB at most).
    big = EVENT | {"user[]": ["x" * (16 * 1024 * 1024)]}
    async with serve(handler) as srv, ZammadClient(zcfg(srv.url(PATH), 0.3)) as c:
        err = await failure(c, big)
        stop.set()
    assert err.reason == "timeout (write)" and err.maybe_processed


async def test_connect_timeout_was_not_processed() -> None:
    # A listening socket whose accept queue is full: the SYN is never answered.
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        port = lsock.getsockname()[1]
        with contextlib.ExitStack() as fillers:
            for _ in range(8):  # fill the backlog (its size is rounded up by the kernel)
                f = fillers.enter_context(socket.socket())
                f.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    f.connect(("127.0.0.1", port))
            async with ZammadClient(zcfg(f"http://127.0.0.1:{port}{PATH}", 0.3)) as c:
                err = await failure(c)
    assert err.reason == "timeout (connect)" and not err.maybe_processed


async def test_pool_timeout_was_not_processed() -> None:
    async def trickle(peer: Peer) -> None:  # a byte each 0.05 s: no read timeout, but slow
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n")
        for _ in range(12):
            await asyncio.sleep(0.05)
            await peer.send(b" ")

    async with (
        serve(trickle) as srv,
        ZammadClient(zcfg(srv.url(PATH), 0.2), max_connections=1) as c,
    ):
        slow = asyncio.create_task(c.post(EVENT))
        await until(lambda: len(srv.requests) == 1)  # it holds the only connection
        err = await failure(c)
        assert await slow == NO_ACTION
    assert err.reason == "timeout (pool)" and not err.maybe_processed
    assert len(srv.requests) == 1


async def test_connection_refused_was_not_processed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with ZammadClient(zcfg(f"http://127.0.0.1:{port}{PATH}")) as c:
        err = await failure(c)
    assert err.reason == "cannot connect: Connection refused" and not err.maybe_processed


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    files = self_signed(tmp_path)
    if files is None:
        pytest.skip("TLS tests need the openssl tool; not found")
    return files


async def test_tls_keep_alive_and_verification(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    async with serve(answer_each(OK), tls=server_tls(cert, key)) as srv:
        url = srv.url(PATH, "https")
        async with ZammadClient(zcfg(url, ca_bundle=str(cert))) as c:
            for _ in range(3):
                assert await c.post(EVENT) == NO_ACTION
        assert srv.connections == 1
        async with ZammadClient(zcfg(url)) as c:  # the system store refuses a self-signed one
            err = await failure(c)
        assert err.reason.startswith("cannot connect: TLS certificate: ")
        assert not err.maybe_processed
        async with ZammadClient(zcfg(url, verify_tls=False)) as c:
            assert await c.post(EVENT) == NO_ACTION
    assert len(srv.requests) == 4


# --- proxies ---------------------------------------------------------------------------------


async def test_https_tunnels_through_the_proxy_with_connect(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    async with serve(answer_each(OK), tls=server_tls(cert, key)) as srv, proxy_server() as proxy:
        cfg = zcfg(srv.url(PATH, "https"), ca_bundle=str(cert), proxy=Secret(proxy.url()))
        async with ZammadClient(cfg) as c:
            for _ in range(3):
                assert await c.post(EVENT) == NO_ACTION
    assert proxy.tunnels == 1 and srv.connections == 1  # one tunnel, kept alive
    connect = proxy.heads[0].split(b"\r\n")
    assert connect[0] == b"CONNECT 127.0.0.1:%d HTTP/1.1" % srv.port and PROXY_AUTH in connect
    # Inside the tunnel: origin-form requests; the proxy's password stayed outside.
    assert all(r.startswith(f"POST {PATH} HTTP/1.1".encode()) for r in srv.requests)
    assert not any(b"proxy-authorization" in r.lower() for r in srv.requests)


async def test_plain_http_goes_to_the_proxy_with_the_absolute_url() -> None:
    async with (
        serve(answer_each(OK)) as srv,
        proxy_server() as proxy,
        ZammadClient(zcfg(srv.url(PATH), proxy=Secret(proxy.url()))) as c,
    ):
        assert await c.post(EVENT) == NO_ACTION
    lines = proxy.heads[0].split(b"\r\n")
    assert lines[0] == f"POST {srv.url(PATH)} HTTP/1.1".encode() and PROXY_AUTH in lines
    assert len(srv.requests) == 1  # forwarded once


async def test_proxy_refusal_and_absence_were_not_processed() -> None:
    async with serve(answer_each(OK)) as srv, proxy_server() as proxy:
        wrong = Secret(proxy.url("squid:wrong-pw@"))
        async with ZammadClient(zcfg(srv.url(PATH, "https"), proxy=wrong)) as c:
            refused = await failure(c)
    assert refused.reason.startswith("proxy refused the tunnel: HTTP 407")
    assert "password" in refused.reason and "wrong-pw" not in refused.reason
    assert not refused.maybe_processed and srv.requests == []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        gone = s.getsockname()[1]
    proxy_url = Secret(f"http://u:{PROXY_PASSWORD}@127.0.0.1:{gone}")
    async with ZammadClient(zcfg(f"https://127.0.0.1:9{PATH}", proxy=proxy_url)) as c:
        down = await failure(c)
    assert down.reason == "cannot connect: proxy: Connection refused"
    assert not down.maybe_processed


@pytest.fixture
def env_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def setenv(proxy: str, no_proxy: str = "") -> None:
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        monkeypatch.setenv("NO_PROXY", no_proxy)

    yield setenv


async def test_environment_proxy_and_no_proxy_are_honoured(env_proxy: Any) -> None:
    async with serve(answer_each(OK)) as srv, proxy_server() as proxy:
        env_proxy(proxy.url())
        async with ZammadClient(zcfg(srv.url(PATH))) as c:
            await c.post(EVENT)
        assert len(proxy.heads) == 1  # through the proxy
        env_proxy(proxy.url(), no_proxy="127.0.0.1")
        async with ZammadClient(zcfg(srv.url(PATH))) as c:
            await c.post(EVENT)
        assert len(proxy.heads) == 1  # direct
    assert len(srv.requests) == 2


async def test_configured_proxy_overrides_the_environment(env_proxy: Any) -> None:
    async with serve(answer_each(OK)) as srv, proxy_server() as env, proxy_server() as conf:
        env_proxy(env.url(), no_proxy="127.0.0.1")
        async with ZammadClient(zcfg(srv.url(PATH), proxy=Secret(conf.url()))) as c:
            await c.post(EVENT)
    assert env.heads == [] and len(conf.heads) == 1  # NO_PROXY does not bypass it either


async def test_socks_proxy_from_the_environment_is_a_clean_error(env_proxy: Any) -> None:
    env_proxy(f"socks5://u:{PROXY_PASSWORD}@127.0.0.1:1")
    with pytest.raises(ZammadRejected) as info:
        async with ZammadClient(zcfg(f"http://127.0.0.1:9{PATH}")) as c:
            await c.post(EVENT)
    assert "proxy" in str(info.value) and leak_free(str(info.value))


# --- secrets in logs, and per-request overhead -------------------------------------------------


async def test_no_secret_in_any_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def drop(peer: Peer) -> None:
        await peer.request()

    redirect = b"HTTP/1.1 302 F\r\nLocation: http://127.0.0.1:9/%s\r\nContent-Length: 0\r\n\r\n"
    handlers = [
        answer_each(OK),
        answer_each(redirect % TOKEN.encode()),
        answer_each(b"HTTP/1.1 500 E\r\nContent-Length: 0\r\n\r\n"),
        answer_then(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n"),
        drop,
    ]
    for handler in handlers:
        async with serve(handler) as srv, proxy_server() as proxy:
            for cfg in (zcfg(srv.url(PATH), 0.3), zcfg(srv.url(PATH), proxy=Secret(proxy.url()))):
                async with ZammadClient(cfg) as c:
                    with contextlib.suppress(ZammadRejected, ZammadUnavailable):
                        await c.post(EVENT)
    assert "HTTP 302" in caplog.text  # the POSTs were logged at DEBUG...
    assert leak_free(caplog.text)  # ...with no token, password or peer, httpx's lines included


async def test_no_import_is_retried_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpcore imports sniffio inside every request; without it that import fails each time.
    failed: list[str] = []
    real_import = builtins.__import__

    def counting_import(name: str, *args: Any, **kw: Any) -> Any:
        try:
            return real_import(name, *args, **kw)
        except ImportError:
            failed.append(name)
            raise

    async with serve(answer_each(OK)) as srv, ZammadClient(zcfg(srv.url(PATH))) as c:
        await c.post(EVENT)
        monkeypatch.setattr(builtins, "__import__", counting_import)
        for _ in range(20):
            await c.post(EVENT)
    assert failed == [] and "sniffio" in sys.modules

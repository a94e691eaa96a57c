"""The web listener inside a real daemon: fake AMI, fake Zammad, real HTTP over loopback."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sqlite3
import ssl
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from cti_bridge.config import parse_config
from cti_bridge.demo.zammad import FakeZammad
from cti_bridge.service.daemon import Daemon
from cti_bridge.service.metrics import Metrics
from cti_bridge.service.status import StatusUnavailable, fetch_status, format_status
from cti_bridge.web import DaemonView, WebServer, create_app
from tests.service.test_daemon import (
    _start_process,
    _write_config,
    lab,
    make_config,
    running,
    until,
)
from tests.service.test_metrics import SNAPSHOT, samples
from tests.support.fake_ami import FakeAmi
from tests.support.raw_http import self_signed

WEB = {"listen": "127.0.0.1:0"}


@asynccontextmanager
async def bridge(tmp: Path, **web: Any) -> AsyncIterator[tuple[Daemon, FakeAmi, httpx.AsyncClient]]:
    """A running daemon with the web listener, its fake AMI, and a client for the listener."""
    async with FakeAmi() as ami:
        with FakeZammad() as zammad:
            cfg = parse_config(make_config(tmp, ami, zammad.url(), web={**WEB, **web}))
            async with running(cfg) as daemon:
                await ami.wait_login()
                await until(lambda: "url" in daemon.snapshot()["web"])
                assert daemon.web is not None
                verify: ssl.SSLContext | bool = False
                if cfg.web.tls_cert:
                    verify = ssl.create_default_context(cafile=cfg.web.tls_cert)
                async with httpx.AsyncClient(
                    base_url=daemon.web.url, verify=verify, timeout=5.0
                ) as client:
                    yield daemon, ami, client


async def test_metrics_and_healthz_share_the_listener(tmp_path: Path, corpus_dir: Path) -> None:
    async with bridge(tmp_path) as (daemon, ami, client):
        host, port = daemon.web.address if daemon.web else ("", 0)
        assert host == "127.0.0.1" and port != 0
        for ev in lab(corpus_dir, "pjsip_in_group_answered")[:3]:
            await ami.send_event(ev)
        await until(lambda: daemon.snapshot()["ami"]["events_read"] >= 3)
        r = await client.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        got = samples(r.text)
        assert got[("cti_bridge_ami_connected", ())] == 1
        assert got[("cti_bridge_ami_events_total", ())] >= 3
        assert ("cti_bridge_outbox_depth", (("route", "default"),)) in got
        assert ("cti_bridge_build_info", (("version", daemon.snapshot()["version"]),)) in got
        h = await client.get("/healthz")
        assert h.status_code == 200
        assert h.json() == {"status": "ok", "checks": {"ami": "ok", "outbox": "ok"}}


async def test_every_response_has_the_security_headers_and_no_banner(tmp_path: Path) -> None:
    async with bridge(tmp_path) as (_daemon, _ami, client):
        for path, status in (("/healthz", 200), ("/metrics", 200), ("/nothing", 404), ("/", 404)):
            r = await client.get(path)
            assert r.status_code == status, path
            assert r.headers["cache-control"] == "no-store", path
            assert r.headers["x-content-type-options"] == "nosniff", path
            assert r.headers["referrer-policy"] == "no-referrer", path
            assert "date" in r.headers, path
            assert "server" not in r.headers, path
        assert (await client.post("/healthz")).status_code == 405


async def test_the_access_log_never_has_the_query_string(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with bridge(tmp_path) as (_daemon, _ami, client):
        assert (await client.get("/healthz?key=S3CRET-KEY")).status_code == 200
        assert (await client.get("/nothing?key=S3CRET-KEY")).status_code == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "cti_bridge.web.app"]
    assert any(line.startswith("GET /healthz 200") for line in lines), lines
    assert any(line.startswith("GET /nothing 404") for line in lines), lines
    assert "S3CRET-KEY" not in caplog.text


async def test_healthz_is_503_while_ami_is_down(tmp_path: Path) -> None:
    async with bridge(tmp_path) as (daemon, ami, client):
        ami.accept_logins = False
        ami.disconnect_all()
        await until(lambda: not daemon.ami.connected)
        r = await client.get("/healthz")
        assert r.status_code == 503
        assert r.json() == {
            "status": "fail",
            "checks": {"ami": "fail", "outbox": "ok"},
            "failing": ["ami"],
        }
        ami.accept_logins = True
        await until(lambda: daemon.ami.connected)
        assert (await client.get("/healthz")).status_code == 200


async def test_healthz_is_503_while_the_outbox_cannot_be_written(
    tmp_path: Path, corpus_dir: Path
) -> None:
    async with bridge(tmp_path) as (daemon, ami, client):
        real = daemon.outbox.put_many
        broken = True

        def flaky(*args: Any, **kw: Any) -> list[int]:
            if broken:
                raise sqlite3.OperationalError("disk I/O error")
            return real(*args, **kw)

        daemon.outbox.put_many = flaky  # type: ignore[method-assign]
        for ev in lab(corpus_dir, "pjsip_in_group_answered"):
            await ami.send_event(ev)
        await until(lambda: daemon.health()["outbox"] is False)
        r = await client.get("/healthz")
        assert r.status_code == 503
        assert r.json()["failing"] == ["outbox"]
        broken = False
        await until(lambda: daemon.health()["outbox"] is True)  # the held events get written
        assert (await client.get("/healthz")).status_code == 200


async def test_tls_with_a_certificate_of_its_own(tmp_path: Path) -> None:
    pair = self_signed(tmp_path)
    if pair is None:
        pytest.skip("no openssl tool to make a test certificate")
    cert, key = pair
    async with bridge(tmp_path, tls_cert=str(cert), tls_key=str(key)) as (daemon, _ami, client):
        assert daemon.web is not None and daemon.web.url.startswith("https://127.0.0.1:")
        assert (await client.get("/healthz")).status_code == 200
        doc = daemon.snapshot()["web"]
        assert doc["tls"] is True and doc["url"] == daemon.web.url
        async with httpx.AsyncClient(timeout=5.0) as plain:  # plain HTTP is not answered
            with pytest.raises(httpx.HTTPError):
                await plain.get(daemon.web.url.replace("https://", "http://") + "/healthz")


async def test_status_reports_the_bound_address(tmp_path: Path) -> None:
    async with bridge(tmp_path, public_url="https://pbx.example.com/cti/") as (daemon, _a, _c):
        doc = await asyncio.to_thread(fetch_status, daemon.cfg.status.socket)
        assert daemon.web is not None
        assert doc["web"] == {
            "url": daemon.web.url,
            "tls": False,
            "public_url": "https://pbx.example.com/cti/",
        }
        assert f"Web      {daemon.web.url}, public https://pbx.example.com/cti/" in format_status(
            doc
        )


async def test_off_by_default(tmp_path: Path) -> None:
    async with FakeAmi() as ami:
        with FakeZammad() as zammad:
            cfg = parse_config(make_config(tmp_path, ami, zammad.url()))
            async with running(cfg) as daemon:
                await ami.wait_login()
                assert daemon.web is None and daemon.metrics is None
                assert daemon.snapshot()["web"] == {"enabled": False}
                assert "Web      off" in format_status(daemon.snapshot())


async def test_a_scrape_reads_the_snapshot_on_the_loop_thread() -> None:
    """Ported from the WSGI thread: the collector now runs on the daemon's own loop."""
    threads: list[int] = []

    def snapshot() -> dict[str, Any]:
        threads.append(threading.get_ident())
        return SNAPSHOT

    metrics = Metrics(snapshot)
    cfg = parse_config(
        {"ami": {"username": "u", "secret": "s"}, "zammad": {"url": "http://z/api/v1/cti/t"},
         "web": WEB}
    ).web  # fmt: skip
    web = WebServer(cfg, create_app(DaemonView(snapshot, metrics.registry, dict)))
    await web.start()
    # An IPPROTO_TCP socket gets TCP_NODELAY from asyncio (else 40 ms per keep-alive request).
    assert web._sock is not None and web._sock.proto == socket.IPPROTO_TCP
    try:
        metrics.observe_post("newCall", "ok", 0.2)
        async with httpx.AsyncClient(base_url=web.url, timeout=5.0) as client:
            r = await client.get("/metrics")
            empty = await client.get("/healthz")
    finally:
        await web.stop()
    assert r.status_code == 200
    got = samples(r.text)
    assert got[("cti_bridge_active_calls", ())] == 3
    assert got[("cti_bridge_agi_decisions_total", (("action", "dial"),))] == 3
    assert (
        got[
            (
                "cti_bridge_cti_events_posted_total",
                (("event", "newCall"), ("result", "ok"), ("route", "default")),
            )
        ]
        == 1
    )
    assert threads == [threading.get_ident()]
    assert empty.status_code == 200  # no parts to check: healthy
    with pytest.raises(RuntimeError):
        _ = web.address


async def test_a_taken_port_is_one_clear_error() -> None:
    first = WebServer(
        parse_config(
            {"ami": {"username": "u", "secret": "s"}, "zammad": {"url": "http://z/api/v1/cti/t"},
             "web": WEB}
        ).web,
        create_app(DaemonView(dict, Metrics(dict).registry, dict)),
    )  # fmt: skip
    await first.start()
    try:
        host, port = first.address
        taken = parse_config(
            {"ami": {"username": "u", "secret": "s"}, "zammad": {"url": "http://z/api/v1/cti/t"},
             "web": {"listen": f"{host}:{port}"}}
        ).web  # fmt: skip
        second = WebServer(taken, create_app(DaemonView(dict, Metrics(dict).registry, dict)))
        with pytest.raises(OSError, match=rf"\[web\] listen {host}:{port}: "):
            await second.start()
    finally:
        await first.stop()


@asynccontextmanager
async def daemon_process(config: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``cti-bridge run`` as a process; killed at the end if the test did not stop it."""
    proc = await _start_process(config, None)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _status_when_up(socket_path: Path) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            try:
                return await asyncio.to_thread(fetch_status, str(socket_path))
            except StatusUnavailable:
                await asyncio.sleep(0.05)


async def test_sigterm_stops_the_daemon_with_the_listener_running(tmp_path: Path) -> None:
    async with FakeAmi() as ami:
        with FakeZammad() as zammad:
            config = _write_config(tmp_path, ami, zammad.url())
            with config.open("a") as f:
                f.write('[web]\nlisten = "127.0.0.1:0"\n')
            async with daemon_process(config) as proc:
                url = (await _status_when_up(tmp_path / "status.sock"))["web"]["url"]
                async with httpx.AsyncClient(timeout=5.0) as client:
                    assert (await client.get(url + "/healthz")).status_code in (200, 503)
                    # An open keep-alive connection must not hold up the stop.
                    proc.send_signal(signal.SIGTERM)
                    assert await asyncio.wait_for(proc.wait(), 20) == 0
                assert proc.stderr is not None
                err = (await proc.stderr.read()).decode()
    assert "Traceback" not in err, err
    assert "stopped;" in err

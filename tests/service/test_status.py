"""Status socket over a real unix socket, the CLI helper and the operator table."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from cti_bridge.config import Secret, ZammadConfig
from cti_bridge.service.status import (
    EXIT_UNAVAILABLE,
    StatusServer,
    StatusUnavailable,
    fetch_status,
    format_duration,
    format_status,
    status_command,
)

FULL: dict[str, Any] = {
    "ami": {
        "connected": True,
        "since": "2026-11-25 14:00:03",
        "last_event_age_s": 0.4,
        "login_failed": False,
        "last_error": None,
    },
    "zammad": {
        "state": "ok",
        "url": "https://zammad.example/api/v1/cti/***",
        "last_error": None,
    },
    "calls": {"active": 3},
    "outbox": {"pending": 0, "oldest_age_s": None, "dead": 0},
    "agi": {
        "listen": "127.0.0.1:4573",
        "requests": 12,
        "decisions": {"reject": 1, "dial": 3, "none": 8},
        "timeouts": 0,
        "errors": 0,
        "dropped": 0,
        "active": 0,
    },
    "uptime_s": 2 * 3600 + 13 * 60 + 5,
    "version": "0.1.0",
}


def _sock_path(tmp_path: Path) -> str:
    # AF_UNIX paths are limited to ~107 bytes; pytest's tmp_path can be long.
    path = tmp_path / "run" / "s.sock"
    if len(str(path)) > 100:
        pytest.skip(f"tmp_path too long for an AF_UNIX socket: {tmp_path}")
    return str(path)


async def _fetch(path: str) -> dict[str, Any]:
    return await asyncio.to_thread(fetch_status, path)


async def test_serves_one_json_document(tmp_path: Path) -> None:
    path = _sock_path(tmp_path)
    calls = 0

    def snapshot() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {**FULL, "calls": {"active": calls}}

    server = StatusServer(path, snapshot)
    await server.start()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        first = await _fetch(path)
        second = await _fetch(path)
        assert first["calls"] == {"active": 1} and second["calls"] == {"active": 2}
        assert first["agi"] == FULL["agi"]
        text, code = await asyncio.to_thread(status_command, path, True)
        assert code == 0 and json.loads(text)["version"] == "0.1.0"
        assert "\n" not in text  # exactly one JSON object, one line
        text, code = await asyncio.to_thread(status_command, path, False)
        assert code == 0 and text.startswith("AMI      connected since 2026-11-25 14:00:03")
    finally:
        await server.stop()
    assert not os.path.exists(path)
    with pytest.raises(StatusUnavailable, match="socket not found"):
        fetch_status(path)


async def test_snapshot_failure_still_answers(tmp_path: Path) -> None:
    def snapshot() -> dict[str, Any]:
        raise KeyError("boom")

    server = StatusServer(_sock_path(tmp_path), snapshot)
    await server.start()
    try:
        doc = await _fetch(server.socket_path)
    finally:
        await server.stop()
    assert doc == {"error": "snapshot failed: KeyError"}


async def test_stale_socket_replaced_live_one_kept(tmp_path: Path) -> None:
    path = _sock_path(tmp_path)
    os.makedirs(os.path.dirname(path))
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # file stays, nobody listens
    server = StatusServer(path, lambda: {"ok": 1})
    await server.start()
    try:
        assert await _fetch(path) == {"ok": 1}
        with pytest.raises(OSError, match="in use"):
            await StatusServer(path, lambda: {}).start()
        assert await _fetch(path) == {"ok": 1}
    finally:
        await server.stop()


async def test_refuses_to_replace_regular_file(tmp_path: Path) -> None:
    path = _sock_path(tmp_path)
    os.makedirs(os.path.dirname(path))
    Path(path).write_text("precious")
    with pytest.raises(OSError, match="not a socket"):
        await StatusServer(path, lambda: {}).start()
    assert Path(path).read_text() == "precious"


def test_no_daemon(tmp_path: Path) -> None:
    path = _sock_path(tmp_path)
    text, code = status_command(path, as_json=False)
    assert code == EXIT_UNAVAILABLE
    assert "no cti-bridge daemon" in text and "\n" not in text
    os.makedirs(os.path.dirname(path))
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()
    with pytest.raises(StatusUnavailable, match="refused"):
        fetch_status(path)


@asynccontextmanager
async def _serve_raw(path: str, payload: bytes | None) -> AsyncIterator[None]:
    """A peer on the socket that answers ``payload`` (garbage), or nothing when it is None."""
    release = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if payload is None:
            await release.wait()
        else:
            writer.write(payload)
        writer.close()
        await writer.wait_closed()

    os.makedirs(os.path.dirname(path), exist_ok=True)
    server = await asyncio.start_unix_server(handle, path=path)
    try:
        yield
    finally:
        release.set()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.01)  # let handlers finish closing


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"not json", "not JSON"), (b"[1, 2]", "not a JSON object"), (b"", "not JSON")],
)
async def test_garbage_answer(tmp_path: Path, payload: bytes, message: str) -> None:
    path = _sock_path(tmp_path)
    async with _serve_raw(path, payload):
        with pytest.raises(StatusUnavailable, match=message):
            await _fetch(path)


async def test_silent_peer_times_out(tmp_path: Path) -> None:
    path = _sock_path(tmp_path)
    async with _serve_raw(path, None):
        with pytest.raises(StatusUnavailable, match="timed out"):
            await asyncio.to_thread(fetch_status, path, 0.2)


def test_format_full() -> None:
    assert format_status(FULL).splitlines() == [
        "AMI      connected since 2026-11-25 14:00:03 (last event 0.4 s ago)",
        "Zammad   ok (https://zammad.example/api/v1/cti/***)",
        "Calls    3 active",
        "Outbox   0 pending",
        "AGI      127.0.0.1:4573, 12 requests (reject 1, dial 3, none 8)",
        "Uptime   2 h 13 min",
        "Version  0.1.0",
    ]


def test_format_sparse_and_degraded() -> None:
    assert format_status({}).splitlines() == [
        "AMI      ?",
        "Zammad   ?",
        "Calls    ? active",
        "Outbox   ?",
        "Uptime   ?",
    ]
    doc = {
        "ami": {"connected": False, "login_failed": True, "last_error": "Authentication\nfailed"},
        "zammad": {
            "state": "down",
            # the daemon redacts, but a leaked token must still not reach the terminal
            "url": "https://zammad.example/api/v1/cti/s3cr3t",
            "last_error": "ConnectError for https://zammad.example/api/v1/cti/s3cr3t",
        },
        "outbox": {"pending": 42, "oldest_age_s": 3700, "dead": 2},
        "agi": {"listen": "127.0.0.1:4573", "requests": 5, "timeouts": 2, "decisions": None},
        "calls": "garbage",
        "uptime_s": 59,
    }
    text = format_status(doc)
    assert "s3cr3t" not in text
    lines = text.splitlines()
    assert lines[0] == "AMI      login failed: Authentication failed"
    assert lines[1].startswith(
        "Zammad   down (https://zammad.example/api/v1/cti/***): ConnectError"
    )
    assert lines[2] == "Calls    ? active"
    assert lines[3] == "Outbox   42 pending (oldest 1 h 1 min), 2 dead"
    assert lines[4] == "AGI      127.0.0.1:4573, 5 requests (reject ?, dial ?, none ?), 2 timeouts"
    assert lines[5] == "Uptime   59 s"


def test_format_names_the_proxy_without_its_credentials() -> None:
    cfg = ZammadConfig(
        url=Secret("https://zammad.example/api/v1/cti/t0ken"),
        proxy=Secret("http://squid:pr0xy-pw@proxy.lan:3128"),
    )
    zammad = {"state": "ok", "url": cfg.display_url, "proxy": cfg.display_proxy}
    text = format_status({"zammad": zammad})
    want = "Zammad   ok (https://zammad.example/api/v1/cti/*** via proxy http://proxy.lan:3128)"
    assert want in text.splitlines()
    assert "pr0xy-pw" not in text and "squid" not in text


def test_format_agi_off() -> None:
    assert "AGI      off ([agi] listen is empty)" in format_status({"agi": {"enabled": False}})


def test_format_outbox_from_delivery_status() -> None:
    doc = {"zammad": {"state": "ok", "pending": 2, "oldest_age_s": 4.3, "dead": 0}}
    assert "Outbox   2 pending (oldest 4.3 s)" in format_status(doc).splitlines()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (61, "1 min 1 s"), (3600, "1 h 0 min"), (90000, "1 d 1 h"), (None, "?")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text

"""sd_notify against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from pathlib import Path

import pytest

from cti_bridge.service.sdnotify import Notifier


def test_messages(systemd: tuple[str, socket.socket]) -> None:
    path, sock = systemd
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready()
    assert sock.recv(4096) == b"READY=1\n"
    assert n.ready("AMI connected")
    assert sock.recv(4096) == b"READY=1\nSTATUS=AMI connected\n"
    assert n.status("Zammad down:\nretrying")
    assert sock.recv(4096) == b"STATUS=Zammad down: retrying\n"
    assert n.watchdog() and sock.recv(4096) == b"WATCHDOG=1\n"
    assert n.stopping() and sock.recv(4096) == b"STOPPING=1\n"
    assert n.notify(extend_timeout_usec=5000000)
    assert sock.recv(4096) == b"EXTEND_TIMEOUT_USEC=5000000\n"
    n.close()


def test_abstract_namespace() -> None:
    name = f"cti-bridge-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        n = Notifier(f"@{name}")
        assert n.ready()
        assert sock.recv(4096) == b"READY=1\n"
        n.close()
    finally:
        sock.close()


def test_noop_without_socket() -> None:
    n = Notifier.from_env({})
    assert not n.enabled
    assert not n.ready()
    assert n.watchdog_interval() is None


def test_send_error_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="cti_bridge")
    n = Notifier(str(tmp_path / "missing"))
    assert not n.ready()
    assert not n.watchdog()
    n.close()
    assert len([r for r in caplog.records if "sd_notify" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("10000000", None, 5.0),
        ("10000000", "self", 5.0),
        ("10000000", "other", None),
        ("0", None, None),
        ("bogus", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(usec: str | None, pid: str | None, expected: float | None) -> None:
    env = {"NOTIFY_SOCKET": "/run/systemd/notify"}
    if usec is not None:
        env["WATCHDOG_USEC"] = usec
    if pid is not None:
        env["WATCHDOG_PID"] = str(os.getpid() if pid == "self" else os.getpid() + 1)
    assert Notifier.from_env(env).watchdog_interval() == expected


async def test_run_watchdog(systemd: tuple[str, socket.socket]) -> None:
    path, sock = systemd
    sock.setblocking(False)
    healthy = True
    n = Notifier(path, watchdog_usec="40000")  # pings every 20 ms
    task = asyncio.create_task(n.run_watchdog(lambda: healthy))
    try:
        async with asyncio.timeout(5):
            assert await asyncio.get_running_loop().sock_recv(sock, 64) == b"WATCHDOG=1\n"
        healthy = False
        await asyncio.sleep(0.1)  # let a ping already in flight land
        while True:  # drain
            try:
                sock.recv(64)
            except BlockingIOError:
                break
        await asyncio.sleep(0.2)  # ~10 intervals, none pinged while unhealthy
        with pytest.raises(BlockingIOError):
            sock.recv(64)
    finally:
        task.cancel()
        n.close()


async def test_run_watchdog_returns_without_watchdog() -> None:
    async with asyncio.timeout(5):
        await Notifier("/run/systemd/notify").run_watchdog()

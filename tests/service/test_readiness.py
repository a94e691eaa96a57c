"""READY=1 once, STATUS= only on change, against a real notify socket."""

from __future__ import annotations

import asyncio
import socket

from cti_bridge.service.readiness import Readiness
from cti_bridge.service.sdnotify import Notifier


def received(sock: socket.socket) -> list[bytes]:
    out: list[bytes] = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096))
    except BlockingIOError:
        return out
    finally:
        sock.setblocking(True)


async def test_ready_once_and_status_only_on_change(
    systemd: tuple[str, socket.socket],
) -> None:
    path, sock = systemd
    line = ["AMI connecting"]
    readiness = Readiness(Notifier.from_env({"NOTIFY_SOCKET": path}), lambda: line[0])
    readiness.start()
    readiness.update()
    readiness.update()
    line[0] = "AMI connected"
    readiness.ready()
    readiness.ready()
    readiness.update()
    readiness.stop()
    await asyncio.sleep(0)
    assert received(sock) == [
        b"STATUS=AMI connecting\n",
        b"READY=1\nSTATUS=AMI connected\n",
        b"STATUS=AMI connected\n",
        b"STOPPING=1\n",
    ]
    readiness.notifier.close()


async def test_ready_anyway_after_the_grace_period(systemd: tuple[str, socket.socket]) -> None:
    path, sock = systemd
    readiness = Readiness(
        Notifier.from_env({"NOTIFY_SOCKET": path}), lambda: "AMI down", grace=0.01
    )
    readiness.start()
    await asyncio.sleep(0.2)
    assert received(sock) == [b"READY=1\nSTATUS=AMI down\n"]
    readiness.ready()  # the late login does not send READY=1 again
    assert received(sock) == []
    readiness.stop()
    readiness.notifier.close()

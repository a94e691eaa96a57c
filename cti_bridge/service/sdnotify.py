"""systemd notification (``Type=notify``, ``WatchdogSec=``) without a libsystemd dependency.

The protocol is one datagram of ``KEY=value`` lines to ``$NOTIFY_SOCKET`` (see sd_notify(3));
a leading ``@`` means the Linux abstract namespace. Outside systemd everything is a no-op, and a
send error is logged once and never raised: notification must not take the daemon down.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(
        self,
        socket_path: str | None,
        *,
        watchdog_usec: str | None = None,
        watchdog_pid: str | None = None,
    ) -> None:
        self.socket_path = socket_path or None
        self._watchdog_usec = watchdog_usec
        self._watchdog_pid = watchdog_pid
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(
            env.get("NOTIFY_SOCKET"),
            watchdog_usec=env.get("WATCHDOG_USEC"),
            watchdog_pid=env.get("WATCHDOG_PID"),
        )

    @property
    def enabled(self) -> bool:
        return self.socket_path is not None

    def notify(self, **fields: object) -> bool:
        """Send ``KEY=value`` fields (keys upper-cased); True if the datagram went out."""
        if self.socket_path is None or not fields:
            return False
        # A newline inside a value would start a new assignment; STATUS is free text.
        payload = "".join(
            f"{key.upper()}={' '.join(str(value).splitlines())}\n" for key, value in fields.items()
        )
        address = self.socket_path
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload.encode("utf-8"), address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning(
                    "sd_notify to %s failed: %s (further failures not logged)",
                    self.socket_path,
                    exc,
                )
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        if status is None:
            return self.notify(READY=1)
        return self.notify(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def stopping(self) -> bool:
        return self.notify(STOPPING=1)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def watchdog_interval(self) -> float | None:
        """Seconds between ``watchdog()`` pings (half of ``WatchdogSec=``), None if not asked."""
        if self.socket_path is None or not self._watchdog_usec:
            return None
        if self._watchdog_pid:
            try:
                if int(self._watchdog_pid) != os.getpid():
                    return None  # meant for another process (we were forked or exec'd)
            except ValueError:
                return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        return usec / 2 / 1_000_000

    async def run_watchdog(self, healthy: Callable[[], bool] | None = None) -> None:
        """Ping systemd's watchdog until cancelled; skip a ping while ``healthy()`` is False.

        Pinging from the event loop itself means a blocked loop stops the pings, and systemd
        restarts the service (``WatchdogSec=``). Returns at once when no watchdog is asked for.
        """
        interval = self.watchdog_interval()
        if interval is None:
            return
        while True:
            ok = True
            if healthy is not None:
                try:
                    ok = healthy()
                except Exception:
                    log.exception("watchdog health check failed")
                    ok = False
            if ok:
                self.watchdog()
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

"""What systemd hears from the daemon: READY=1 once, and a STATUS line when it changes.

READY=1 follows the first AMI login, or comes anyway after a grace period: with the PBX down at
boot, systemd would otherwise kill and restart the daemon in a loop while the outbox and the
FastAGI hook are needed. The STATUS line is sent only when its text changes, so an idle daemon
does not wake systemd.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from cti_bridge.service.sdnotify import Notifier

log = logging.getLogger("cti_bridge")

READY_GRACE = 20.0  # READY=1 at the first AMI login, or after this long without one


class Readiness:
    """READY=1 and STATUS= for one daemon; ``line`` builds the current status text."""

    def __init__(
        self, notifier: Notifier, line: Callable[[], str], *, grace: float = READY_GRACE
    ) -> None:
        self.notifier = notifier
        self._line = line
        self._grace = grace
        self._sent = False
        self._timer: asyncio.TimerHandle | None = None
        self._last = ""

    def start(self) -> None:
        """Arm the grace timer; call before connecting to the PBX."""
        self._timer = asyncio.get_running_loop().call_later(self._grace, self._ready_anyway)

    def ready(self) -> None:
        """The PBX is logged in: READY=1, once."""
        if not self._sent:
            self._sent = True
            self.notifier.ready(self._line())

    def update(self) -> None:
        line = self._line()
        if line != self._last:
            self._last = line
            self.notifier.status(line)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.notifier.stopping()

    def _ready_anyway(self) -> None:
        self._timer = None
        if not self._sent:
            self.ready()
            log.warning("AMI not logged in after %.0f s; running without it", self._grace)

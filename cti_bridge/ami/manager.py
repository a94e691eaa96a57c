"""The panoramisk Manager, as the client runs it: connect failures reported, stopped for good.

panoramisk reschedules a connect only after an ``OSError`` and keeps reconnecting after
``close()`` if a retry timer was already armed
(docs/asterisk-ami.md#135-connect-raises-although-a-retry-is-already-scheduled).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from panoramisk import Manager


class LinkState(StrEnum):
    """Where the AMI link stands; only ``LOGGED_IN`` counts as connected.

    A TCP connection without a login answer is its own state because the watchdog bounds how
    long it may last (docs/asterisk-ami.md#136-a-refused-login-is-silent).
    """

    STOPPED = "stopped"
    CONNECTING = "connecting"  # no TCP connection: first attempt, or waiting to retry
    LOGGING_IN = "logging in"  # TCP up, the login answer has not come yet
    LOGGED_IN = "logged in"


class HardenedManager(Manager):  # type: ignore[misc]
    """panoramisk Manager that reports connect failures and stays down once stopped."""

    def __init__(self, on_connect_failed: Callable[[BaseException], None], **config: Any) -> None:
        super().__init__(**config)
        self._on_connect_failed = on_connect_failed
        self.stopped = False

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        if self.stopped:  # a reconnect timer scheduled before stop() fired
            return None
        return super().connect(*args, **kwargs)

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if f.cancelled():
            return
        exc = f.exception()
        if self.stopped:
            if exc is None:
                f.result()[0].close()
            return
        if exc is not None:
            self._on_connect_failed(exc)
            if not isinstance(exc, OSError):  # panoramisk only reschedules after OSError
                self.loop.call_later(self.reconnect_timeout, self.connect)
                return
        super().connection_made(f)

    def fail_pending(self) -> None:
        """Fail actions parked for a resend on FullyBooted: their callers time out anyway.

        docs/asterisk-ami.md#137-pending-actions-wait-for-fullybooted
        """
        while self.awaiting_actions:
            action = self.awaiting_actions.popleft()
            if not action.future.done():
                action.future.set_exception(ConnectionError("AMI connection lost"))

"""The ping watchdog: notices a half-open AMI link and makes panoramisk reconnect.

panoramisk's own pinger never checks the ``Pong``
(docs/asterisk-ami.md#134-ping-answers-are-never-checked) and a refused login is silent
(docs/asterisk-ami.md#136-a-refused-login-is-silent), so a dead link or an unanswered login
would sit there forever. Aborting the transport is enough: panoramisk's ``connection_lost``
reconnects by itself.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from cti_bridge.ami.manager import LinkState

if TYPE_CHECKING:
    from cti_bridge.ami.client import AmiClient


class PingWatchdog:
    """Pings every ``ping_interval`` while logged in; drops a link that stops answering."""

    def __init__(self, client: AmiClient) -> None:
        self._client = client
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="ami-watchdog")

    async def stop(self) -> None:
        if self._task is None:
            return
        # 3.11's wait_for can swallow a cancel when its future completes at the same moment;
        # the loop also checks ``stopped``, and this wait is bounded.
        self._task.cancel()
        await asyncio.wait([self._task], timeout=self._client.cfg.ping_timeout + 1.0)
        self._task = None

    async def _watch(self) -> None:
        client = self._client
        while (mgr := client.manager) is not None and not mgr.stopped:
            await asyncio.sleep(client.cfg.ping_interval)
            mgr = client.manager
            if mgr is None or mgr.stopped or mgr.protocol is None:
                continue
            proto = mgr.protocol
            reason = await self._check()
            if reason is not None and proto is mgr.protocol:
                client.drop(proto, reason)

    async def _check(self) -> str | None:
        """Why the current link should be dropped, or None when it is fine."""
        client = self._client
        cfg = client.cfg
        if client.link is LinkState.LOGGED_IN:
            if await client.request({"Action": "Ping"}, cfg.ping_timeout) is not None:
                return None
            if client.link is not LinkState.LOGGED_IN:
                return None  # the link went down meanwhile: nothing left to drop
            last = client.stats.last_event_at
            if last is not None and time.time() - last < cfg.ping_timeout:
                # Events are still arriving: the Pong is queued behind them (a flood we are
                # slow to read), the link is not half-open. Dropping it would lose the very
                # events that are late.
                return None
            return f"AMI ping timeout ({cfg.ping_timeout:g}s)"
        since = client.link_since
        if (
            client.link is LinkState.LOGGING_IN
            and since is not None
            and not client.login_failed
            and time.monotonic() - since > cfg.ping_interval + cfg.ping_timeout
        ):
            return "AMI login not answered"
        return None

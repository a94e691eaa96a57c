"""The channel listing after every login: what the tracker reconciles its calls with.

Events sent while the link was down are lost and nothing replays them, so every login asks
``CoreShowChannels`` and hands the listed channels to the tracker
(docs/asterisk-ami.md#138-events-during-a-disconnect-are-lost,
docs/asterisk-ami.md#10-resync-after-a-reconnect).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from panoramisk import Manager
from panoramisk.actions import Action
from panoramisk.message import Message

from cti_bridge.ami.protocol import Event, ProtoStats, RateLimitedLog

log = logging.getLogger("cti_bridge.ami.client")

OnResync = Callable[[list[Event]], None]


def plain(message: Message) -> Event:
    """A panoramisk Message as the same plain dict events use (repeats joined by LF)."""
    out: Event = {}
    for key, value in message.items():
        if key == "content":  # panoramisk's body slot, not an AMI header
            continue
        out[key] = "\n".join(value) if isinstance(value, list) else str(value)
    return out


class ChannelListing:
    """Runs ``CoreShowChannels`` and reports the listing at its Complete event.

    The listing is handed over from the protocol's own read, right where ``Complete`` is in the
    stream: events before it reach the tracker before the resync, events after it after.
    """

    def __init__(
        self, on_resync: OnResync | None, stats: ProtoStats, rlog: RateLimitedLog, timeout: float
    ) -> None:
        self._on_resync = on_resync
        self._stats = stats
        self._rlog = rlog
        self._timeout = timeout

    async def run(self, mgr: Manager) -> None:
        action = Action({"Action": "CoreShowChannels"})
        action.on_complete = self._done
        future = mgr.send_action(action)
        try:
            await asyncio.wait_for(future, self._timeout)
        except (TimeoutError, ConnectionError):
            action.on_complete = None
            if mgr.protocol is not None:
                mgr.protocol.responses.pop(action.id, None)
            log.warning("AMI CoreShowChannels got no complete answer; no resync this time")

    def _done(self, result: Message | list[Message]) -> None:
        if not isinstance(result, list):
            self._rlog(
                "resync-denied",
                logging.ERROR,
                "AMI CoreShowChannels refused (%s): calls that changed while disconnected are"
                " not reconciled; add 'reporting' to write= in manager.conf",
                result.get("Message", "error"),
            )
            return
        channels = [plain(m) for m in result if m.get("Event") == "CoreShowChannel"]
        log.debug("AMI resync: %d active channel(s)", len(channels))
        if self._on_resync is None:
            return
        try:
            self._on_resync(channels)
        except Exception:
            self._stats.callback_errors += 1
            log.exception("AMI resync handler failed")

"""Click-to-dial: check the link, read the number, apply the limits, originate, follow it.

Order of checks for a request on an agent's handler URL: the key (403, nothing else happens
and nothing about the key is logged), then the number (400 with what is wrong with it), then
``[dial] deny`` (403 naming the pattern), then the per-agent limits (429 with Retry-After),
then the AMI (503 when not logged in). Only then the phone rings: an asynchronous Originate
of the agent's device into ``[dial] context`` at ``prefix + number``. The call to the customer
that follows is an ordinary outbound call of that phone, so the call model and the AGI hook
post it like any other (docs/asterisk-ami.md#9-direction).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum

from cti_bridge.ami.originate import OriginateOutcome, OriginateRequest, OriginateResult
from cti_bridge.config import DialConfig
from cti_bridge.dial.attempts import Attempt, Attempts, DialState
from cti_bridge.dial.keys import LinkKeys
from cti_bridge.dial.limits import DialLimits
from cti_bridge.dial.target import DeniedNumber, TargetPlan
from cti_bridge.dial.tel import TelError, parse_tel
from cti_bridge.numbers import NumberPlan

log = logging.getLogger("cti_bridge.dial")

RING_TIMEOUT_MS = 30000
#: The outcome event comes at most RING_TIMEOUT_MS after the Originate; then some slack.
OUTCOME_WAIT = RING_TIMEOUT_MS / 1000 + 15

Originate = Callable[[OriginateRequest], Awaitable[OriginateResult]]

_OUTCOME_STATES = {
    OriginateOutcome.ANSWERED: DialState.ANSWERED,
    OriginateOutcome.BUSY: DialState.BUSY,
    OriginateOutcome.NO_ANSWER: DialState.NO_ANSWER,
    OriginateOutcome.FAILED: DialState.FAILED,
}


class Refusal(IntEnum):
    """Why a dial was not placed, as its HTTP status."""

    BAD_NUMBER = 400
    DENIED = 403
    TOO_SOON = 429
    PBX_DOWN = 503
    PBX_REFUSED = 502


@dataclass(frozen=True)
class DialReply:
    """What the page shows at once: the attempt to follow, or why nothing was dialled."""

    message: str
    attempt: Attempt | None = None
    refusal: Refusal | None = None
    retry_after: float = 0.0


class DialService:
    """Everything click-to-dial needs besides HTTP."""

    def __init__(
        self,
        cfg: DialConfig,
        numbers: NumberPlan,
        *,
        serial: Callable[[str], int],
        originate: Originate,
        clock: Callable[[], float],
    ) -> None:
        self.cfg = cfg
        self.keys = LinkKeys(cfg.secret)
        self.targets = TargetPlan(cfg, numbers)
        self.limits = DialLimits(cfg.max_per_minute, clock)
        self.attempts = Attempts(clock)
        self._serial = serial  # read per request: a revoke in another process counts at once
        self._originate = originate
        self._tasks: set[asyncio.Task[None]] = set()

    def key_valid(self, ext: str, key: str) -> bool:
        return self.keys.valid(ext, self._serial(ext), key)

    def link_key(self, ext: str) -> str:
        return self.keys.key(ext, self._serial(ext))

    async def place(self, ext: str, tel_url: str) -> DialReply:
        """Dial ``tel_url`` for agent ``ext`` (whose key was checked)."""
        try:
            target = self.targets.target(parse_tel(tel_url))
        except TelError as exc:
            return DialReply(str(exc), refusal=Refusal.BAD_NUMBER)
        except DeniedNumber as exc:
            log.info("dial for %s refused: %s", ext, exc)
            return DialReply(str(exc), refusal=Refusal.DENIED)
        wait = self.limits.acquire(ext)
        if wait > 0:
            return DialReply(
                f"Too many calls: wait {wait:.0f} s before the next one.",
                refusal=Refusal.TOO_SOON,
                retry_after=wait,
            )
        request = OriginateRequest(
            channel=self.cfg.device_for(ext),
            context=self.cfg.context,
            exten=target.exten,
            caller_id=f'"\u2192 {target.display}" <{ext}>',
            timeout_ms=RING_TIMEOUT_MS,
        )
        result = await self._originate(request)
        if result.outcome is None:
            refusal = Refusal.PBX_DOWN if "not connected" in result.error else Refusal.PBX_REFUSED
            message = f"The phone system did not place the call: {result.error}"
            return DialReply(message, None, refusal)
        log.info("dial: %s rings for %s (exten %s)", request.channel, target.display, target.exten)
        attempt = self.attempts.add(
            ext, target.display, f"Your phone {ext} rings; pick it up to call {target.display}."
        )
        self._follow(attempt, result.outcome)
        return DialReply(attempt.message, attempt)

    def _follow(self, attempt: Attempt, outcome: asyncio.Future[OriginateOutcome]) -> None:
        task = asyncio.ensure_future(self._settle(attempt, outcome))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, attempt: Attempt, outcome: asyncio.Future[OriginateOutcome]) -> None:
        try:
            result = await asyncio.wait_for(outcome, OUTCOME_WAIT)
        except (TimeoutError, asyncio.CancelledError):
            result = OriginateOutcome.FAILED
        attempt.state = _OUTCOME_STATES[result]
        attempt.message = _MESSAGES[attempt.state].format(ext=attempt.ext, to=attempt.display)
        log.info("dial for %s to %s: %s", attempt.ext, attempt.display, attempt.state)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


_MESSAGES = {
    DialState.ANSWERED: "You picked up: calling {to}.",
    DialState.BUSY: "Your phone {ext} was busy: {to} was not called.",
    DialState.NO_ANSWER: "Your phone {ext} was not picked up: {to} was not called.",
    DialState.FAILED: "Your phone {ext} could not be reached: {to} was not called.",
}

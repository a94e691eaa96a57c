"""AMI ``Originate`` with ``Async: true``, and its outcome from the ``OriginateResponse`` event.

An asynchronous Originate is answered at once ("Originate successfully queued") and its
outcome comes later, as an ``OriginateResponse`` event with the action's ActionID
(``Response: Success|Failure`` and ``Reason``, Asterisk's control frame number of how the
channel ended up). panoramisk cannot take such an answer without an ``Async`` header
(docs/asterisk-ami.md#139-successfully-queued-answers-need-async), and with one it would keep the
action open until the event and resolve it with both frames. The client sends it with
``as_list=False`` instead: the action completes on the first answer, and the event arrives as an
ordinary event (it is in ``ami.wanted.CLIENT_EVENTS`` and in the example ``eventfilter``) that
:class:`PendingOriginates` matches by ActionID.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)

#: ``AmiClient.request``: an action's fields and a timeout in, its answer (or None) out.
Request = Callable[..., Awaitable[Any]]

ORIGINATE_RESPONSE = "OriginateResponse"


class OriginateOutcome(StrEnum):
    """How the originated channel (the agent's phone) ended up."""

    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no-answer"  # rang until the timeout, declined, or not reachable
    FAILED = "failed"  # congestion, or no outcome came (the AMI link dropped)


# Reason = the AST_CONTROL_* frame the originate saw last (include/asterisk/frame.h):
# 1 HANGUP, 3 RINGING, 4 ANSWER, 5 BUSY, 8 CONGESTION; 0 = none. A PJSIP phone answering
# "486 Busy Here" or declining comes as Reason 0 (seen on the lab's Asterisk 16), like a phone
# that is not reachable: 0 can only mean "not picked up", not "busy".
_REASONS = {
    "0": OriginateOutcome.NO_ANSWER,
    "4": OriginateOutcome.ANSWERED,
    "5": OriginateOutcome.BUSY,
    "3": OriginateOutcome.NO_ANSWER,
    "1": OriginateOutcome.NO_ANSWER,
}


def outcome_of(event: Mapping[str, str]) -> OriginateOutcome:
    """The outcome an ``OriginateResponse`` event reports."""
    if event.get("Response", "").lower() == "success":
        return OriginateOutcome.ANSWERED
    return _REASONS.get(event.get("Reason", "").strip(), OriginateOutcome.FAILED)


@dataclass(frozen=True)
class OriginateRequest:
    """What to originate: the channel to ring first, then where it goes in the dialplan."""

    channel: str
    context: str
    exten: str
    caller_id: str
    timeout_ms: int = 30000

    def fields(self, action_id: str) -> dict[str, str]:
        return {
            "Action": "Originate",
            "ActionID": action_id,
            "Channel": self.channel,
            "Context": self.context,
            "Exten": self.exten,
            "Priority": "1",
            "Timeout": str(self.timeout_ms),
            "CallerID": self.caller_id,
            "Async": "true",
        }


@dataclass(frozen=True)
class OriginateResult:
    """Asterisk's first answer: queued (``outcome`` will resolve) or refused (``error``)."""

    outcome: asyncio.Future[OriginateOutcome] | None
    error: str = ""

    @property
    def queued(self) -> bool:
        return self.outcome is not None


class PendingOriginates:
    """Originates whose ``OriginateResponse`` has not come yet, by ActionID."""

    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[OriginateOutcome]] = {}
        self._ids = itertools.count(1)
        self._prefix = f"cti-originate-{secrets.token_hex(4)}-"

    def __len__(self) -> int:
        return len(self._futures)

    def open(self) -> tuple[str, asyncio.Future[OriginateOutcome]]:
        """A fresh ActionID and the future its outcome resolves."""
        action_id = f"{self._prefix}{next(self._ids)}"
        future: asyncio.Future[OriginateOutcome] = asyncio.get_running_loop().create_future()
        self._futures[action_id] = future
        future.add_done_callback(lambda _f: self._futures.pop(action_id, None))
        return action_id, future

    def resolve(self, event: Mapping[str, str]) -> bool:
        """Settle the originate ``event`` answers; False when it is not one of ours."""
        future = self._futures.pop(event.get("ActionID", ""), None)
        if future is None:
            return False
        if not future.done():
            future.set_result(outcome_of(event))
        return True

    def fail_all(self) -> None:
        """The link dropped: the outcome events of these originates will never come."""
        for future in list(self._futures.values()):
            if not future.done():
                future.set_result(OriginateOutcome.FAILED)
        self._futures.clear()


async def originate(
    request: Request, pending: PendingOriginates, call: OriginateRequest, timeout: float
) -> OriginateResult:
    """AMI Originate with ``Async: true``: queued (the outcome future resolves with the
    ``OriginateResponse``) or refused with Asterisk's message.

    docs/asterisk-ami.md#139-successfully-queued-answers-need-async: the action completes on
    the first answer (``as_list=False``); the outcome arrives as an event.
    """
    action_id, outcome = pending.open()
    resp = await request(call.fields(action_id), timeout, as_list=False)
    if resp is not None and not isinstance(resp, list) and resp.success:
        return OriginateResult(outcome)
    outcome.cancel()
    if resp is None or isinstance(resp, list):
        return OriginateResult(None, "the PBX did not answer (AMI not connected)")
    message = resp.get("Message", "") or "refused"
    if "permission denied" in message.lower():
        message += " (the AMI user needs write = originate)"
    log.warning("AMI Originate to %s refused: %s", call.channel, message)
    return OriginateResult(None, message)

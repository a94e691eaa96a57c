"""Zammad's answer to a ``newCall`` turned into what the FastAGI hook does to the channel.

Zammad answers ``reject`` for a blocked inbound caller and ``dial`` with a caller ID for an
outbound call that matches a routing row (docs/zammad-cti.md#7-answers-reject-and-dial). Only
the hook can apply either in time, because it runs before ``Dial()``
(docs/asterisk-ami.md#11-acting-on-a-call-ami-is-too-late-fastagi-is-in-time). Pure: no I/O,
so every answer/direction pair is tested without a PBX.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from cti_bridge.agi.wire import AgiRequest
from cti_bridge.calls.tracker import IN, OUT
from cti_bridge.events import CtiEvent

Action = Literal["reject", "dial", "none"]
ACTIONS: tuple[Action, ...] = ("reject", "dial", "none")

#: What Asterisk may be given as ``CALLERID(num)``: anything else could smuggle dialplan syntax.
CALLER_ID_RE = re.compile(r"\+?[0-9]{1,20}")


@dataclass(frozen=True)
class AgiDecision:
    """What the hook does: ``none`` is also the fail-open answer to timeouts and errors."""

    action: Action = "none"
    caller_id: str | None = None


NONE = AgiDecision("none")
Decide = Callable[[AgiRequest], Awaitable[AgiDecision]]


class Answer(Protocol):
    """The part of Zammad's answer a decision reads (``ZammadAnswer`` has it)."""

    @property
    def action(self) -> str: ...

    @property
    def caller_id(self) -> str | None: ...


def valid_caller_id(value: object) -> str | None:
    """``value`` if it is ``+`` and digits, else None (the hook then changes nothing)."""
    if isinstance(value, str) and CALLER_ID_RE.fullmatch(value):
        return value
    return None


def decision_for(
    event: CtiEvent, answer: Answer | None, caller_id: Callable[[str], str]
) -> AgiDecision:
    """The decision for the ``newCall`` ``event`` Zammad answered with ``answer``.

    A reject only applies to inbound calls and a caller ID only to outbound ones: Zammad sends
    both from its own routing tables and the bridge does not act on one that does not fit the
    call. ``caller_id`` formats Zammad's number for the trunk (``NumberPlan.caller_id``,
    docs/zammad-cti.md#8-numbers-exact-digits). No answer (timeout, error) is ``none``.
    """
    if answer is None:
        return NONE
    direction = event.get("direction")
    if answer.action == "reject" and direction == IN:
        return AgiDecision("reject")
    if answer.action == "dial" and direction == OUT and answer.caller_id:
        return AgiDecision("dial", caller_id(answer.caller_id))
    return NONE

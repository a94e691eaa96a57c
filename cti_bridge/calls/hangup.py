"""The end of a call: one ``hangup`` per posted call, with a cause read from its history.

The caller's own Hangup cause is almost always 16 whatever happened, so the cause comes from
what the tracker recorded during the call (answered, forwarded, the caller gave up, each
leg's Dial status and cause) by the tables of docs/causes.md. The tables are data here, in
the order the document gives them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

from cti_bridge.calls.graph import ChannelGraph
from cti_bridge.calls.model import Call, Channel, Event, NewCallState, base_event
from cti_bridge.calls.newcall import NewCallGate
from cti_bridge.causes import (
    CONGESTION_CAUSES,
    NO_ANSWER_CAUSES,
    NOT_FOUND_CAUSES,
    Q850,
    ZammadCause,
)
from cti_bridge.events import CtiEvent

log = logging.getLogger("cti_bridge.calls.tracker")

_PENDING, _SENT = NewCallState.PENDING, NewCallState.SENT


class LegOutcome(Enum):
    """What one dialled leg says about the call, best first.

    docs/causes.md#4-several-legs-the-best-outcome: among the legs, the first outcome in this
    order decides. A leg that rang until Dial's timeout (RANG_OUT) means somebody could have
    answered, so it outweighs a busy one.
    """

    RANG_OUT = ZammadCause.NO_ANSWER, 0
    BUSY = ZammadCause.BUSY, 1
    NO_ANSWER = ZammadCause.NO_ANSWER, 2
    NOT_FOUND = ZammadCause.NOT_FOUND, 3
    CONGESTION = ZammadCause.CONGESTION, 4

    @property
    def cause(self) -> ZammadCause:
        return self.value[0]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class LegRule:
    """One row of docs/causes.md#3-outcome-of-one-leg-in-order.

    A row matches on the leg's Hangup cause or its DialEnd status; with ``both`` it needs
    the two together. ``outcome`` None: the leg is ignored.
    """

    outcome: LegOutcome | None
    causes: frozenset[int | None] = frozenset()
    statuses: frozenset[str] = frozenset()
    both: bool = False

    def matches(self, cause: int | None, status: str) -> bool:
        by_cause = cause in self.causes
        by_status = status in self.statuses
        return (by_cause and by_status) if self.both else (by_cause or by_status)


#: The leg table, evaluated top to bottom; a leg that matches no row is ignored.
LEG_RULES: tuple[LegRule, ...] = (
    # Cancelled because another phone answered: says nothing about the call.
    LegRule(None, frozenset({Q850.ANSWERED_ELSEWHERE}), frozenset({"CANCEL"}), both=True),
    # Busy first: a busy leg is busy whatever status Asterisk derived from its cause.
    LegRule(LegOutcome.BUSY, frozenset({Q850.USER_BUSY}), frozenset({"BUSY"})),
    LegRule(LegOutcome.NOT_FOUND, frozenset(NOT_FOUND_CAUSES)),
    LegRule(LegOutcome.CONGESTION, frozenset(CONGESTION_CAUSES), frozenset({"CONGESTION"})),
    # The plain ring-out: Dial gave up after its timeout (no cause: still up at the end).
    LegRule(
        LegOutcome.RANG_OUT,
        frozenset({Q850.NOT_DEFINED, Q850.NORMAL_CLEARING, None}),
        frozenset({"NOANSWER"}),
        both=True,
    ),
    LegRule(LegOutcome.CONGESTION, statuses=frozenset({"CHANUNAVAIL"})),
    LegRule(LegOutcome.NO_ANSWER, frozenset(NO_ANSWER_CAUSES), frozenset({"NOANSWER"})),
)

#: docs/causes.md#5-nothing-dialled-the-callers-own-cause, in order; anything else: noAnswer.
#: 127 is no congestion here: PJSIP also records it for a caller's 487 Request Terminated.
CALLER_CAUSES: tuple[tuple[frozenset[int], ZammadCause], ...] = (
    (frozenset({Q850.USER_BUSY}), ZammadCause.BUSY),  # e.g. rejected by the FastAGI hook
    (frozenset(NOT_FOUND_CAUSES), ZammadCause.NOT_FOUND),
    (frozenset(CONGESTION_CAUSES - {Q850.INTERWORKING}), ZammadCause.CONGESTION),
)


def leg_outcome(leg: Channel) -> LegOutcome | None:
    """What one leg says (None: nothing), by the first row of ``LEG_RULES`` that matches."""
    cause, status = leg.hangup_cause, leg.dial_status
    for rule in LEG_RULES:
        if rule.matches(cause, status):
            return rule.outcome
    return None


def hangup_cause(call: Call) -> ZammadCause:
    """docs/causes.md#2-call-level-rules-in-order: the first rule that matches decides."""
    if call.answered:
        return ZammadCause.NORMAL_CLEARING
    if call.forwarded:
        return ZammadCause.FORWARDED
    if call.caller_cancelled:
        return ZammadCause.CANCEL
    outcomes = {o for o in map(leg_outcome, call.legs) if o is not None}
    if outcomes:
        return min(outcomes, key=lambda o: o.value[1]).cause
    # Nothing was dialled: the caller's own end tells, e.g. a reject by the FastAGI hook
    # (Hangup(17)) is busy; an IVR or voicemail that released the caller is not.
    caller = call.caller or call.root
    q850 = caller.hangup_cause if caller is not None else None
    for causes, zammad in CALLER_CAUSES:
        if q850 in causes:
            return zammad
    return ZammadCause.NO_ANSWER


def _cause(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return None


class Hangups:
    """Records how a call is ending and posts its ``hangup`` once the last channel is gone."""

    def __init__(self, graph: ChannelGraph, gate: NewCallGate) -> None:
        self._graph = graph
        self._channels = graph.channels  # the same dict for the graph's lifetime
        self._gate = gate

    def on_dial_state(self, ev: Event, out: list[CtiEvent]) -> None:
        if ev.get("Forward"):
            dest = self._channels.get(ev.get("DestUniqueid", ""))
            if dest is not None:
                dest.call.forwarded = True

    def on_queue_abandon(self, ev: Event, out: list[CtiEvent]) -> None:
        ch = self._channels.get(ev.get("Uniqueid", ""))
        if ch is not None:
            if ev.get("Queue") and not ch.call.queue:
                ch.call.queue = ev.get("Queue", "")
            if not ch.call.answered:
                ch.call.caller_cancelled = True

    def on_hangup_request(self, ev: Event, out: list[CtiEvent]) -> None:
        """The caller hanging up while nothing has failed yet: the caller gave up."""
        ch = self._channels.get(ev.get("Uniqueid", ""))
        if ch is None:
            return
        call = ch.call
        if (
            ch is call.caller
            and not call.answered
            and not any(leg.dial_status and leg.dial_status not in ("ANSWER",) for leg in call.legs)
        ):
            call.caller_cancelled = True

    def on_hangup(self, ev: Event, out: list[CtiEvent]) -> None:
        ch = self._graph.remove(ev.get("Uniqueid", ""))
        if ch is None:
            return
        call = ch.call
        call.last_seen = self._graph.now()
        cause = _cause(ev.get("Cause"))
        ch.hangup_cause = cause
        if cause == Q850.REDIRECTED and not call.answered:
            call.forwarded = True
        if not call.channels:
            self.finish(call, out)

    def finish(self, call: Call, out: list[CtiEvent]) -> None:
        """The call is over (last channel gone, idle too long, evicted, or gone in a resync)."""
        if call.newcall_state is _PENDING:
            self._gate.emit(call, out)
        self._gate.pending.pop(call.call_id, None)
        if call.newcall_state is _SENT and not call.silent:
            ev = base_event(call, "hangup")
            ev["cause"] = hangup_cause(call).value
            out.append(ev)
        self._graph.forget(call)

    def evict(self, out: list[CtiEvent]) -> None:
        """Too many calls: close the one that went longest without an event."""
        calls = self._graph.calls
        oldest = min(calls.values(), key=lambda c: c.last_seen)
        log.warning("tracking %d calls: closing the oldest, %s", len(calls), oldest.call_id)
        self.finish(oldest, out)

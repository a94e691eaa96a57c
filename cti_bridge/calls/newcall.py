"""Holding an inbound ``newCall`` until the phones ring.

Zammad shows ``user[]`` of a ``newCall`` as the users the call is for, so it is worth waiting
until the call's first fan-out (``DialBegin``, ``AgentCalled``...) names them. A pending
``newCall`` goes out on the first event of the call that is not part of its set-up, at the
call's end, or ``newcall_delay`` seconds after it was armed (``tick``), whichever is first
(docs/zammad-cti.md#3-fields-per-event).
"""

from __future__ import annotations

from collections.abc import Callable

from cti_bridge.calls.graph import ChannelGraph
from cti_bridge.calls.model import Call, Direction, Event, NewCallState, base_event
from cti_bridge.calls.rules import Pbx, RouteFacts
from cti_bridge.events import CtiEvent

_NONE, _PENDING, _SENT = NewCallState.NONE, NewCallState.PENDING, NewCallState.SENT
# Events that end the set-up of a call even before its fan-out: the caller is gone or
# bridged, so there is nothing more to wait for.
_ENDS_SETUP = frozenset({"Hangup", "HangupRequest", "BridgeEnter"})


class NewCallGate:
    """The calls whose ``newCall`` is held, and the rule that releases each."""

    def __init__(
        self,
        graph: ChannelGraph,
        pbx: Pbx,
        clock: Callable[[], float],
        setup_events: frozenset[str],
    ) -> None:
        self._graph = graph
        self._channels = graph.channels  # the same dict for the graph's lifetime
        self._pbx = pbx
        self._clock = clock
        self._setup_events = setup_events  # do not release a pending newCall
        self.pending: dict[str, Call] = {}

    def arm(self, call: Call) -> None:
        """Hold the call's newCall from now on (calls joined mid-way are never posted)."""
        if call.newcall_state is _NONE and not call.silent:
            call.newcall_state = _PENDING
            call.armed_at = self._clock()
            self.pending[call.call_id] = call

    def release_on(self, ev: Event, out: list[CtiEvent]) -> None:
        """Post a pending newCall when this event shows the call is past its set-up."""
        name = ev.get("Event", "")
        if name in self._setup_events:
            return
        ch = self._channels.get(ev.get("Uniqueid", ""))
        if ch is None:
            return
        call = ch.call
        if call.newcall_state is not _PENDING:
            return
        if name == "Newstate" and ch is call.root:
            return  # a queue or IVR answering the caller is still set-up
        if not call.fanout and name not in _ENDS_SETUP:
            return
        self.emit(call, out)

    def next_due(self) -> float | None:
        """When the oldest pending newCall is due, None when none is held."""
        delay = self._pbx.rules.newcall_delay
        return min((c.armed_at + delay for c in self.pending.values()), default=None)

    def release_due(self, now: float, out: list[CtiEvent]) -> None:
        """Post every newCall held for ``newcall_delay`` or longer."""
        if not self.pending:
            return
        delay = self._pbx.rules.newcall_delay
        for call in [c for c in self.pending.values() if now - c.armed_at >= delay]:
            self.emit(call, out)

    def release_all(self, out: list[CtiEvent]) -> None:
        for call in list(self.pending.values()):
            self.emit(call, out)

    def emit(self, call: Call, out: list[CtiEvent]) -> None:
        """Post the call's newCall now, unless it is not to be posted at all."""
        self.pending.pop(call.call_id, None)
        if call.newcall_state is _SENT or call.silent:
            return
        if call.direction is Direction.INTERNAL and not self._pbx.rules.report_internal:
            call.newcall_state = _NONE
            return
        if call.direction is None:
            return
        if call.direction is Direction.IN and call.caller is not None and not call.from_:
            call.from_ = self._pbx.caller_number(call.caller)
        call.newcall_state = _SENT
        call.route = self._pbx.route(route_facts(call))
        ev = base_event(call, "newCall")
        ev["user[]"] = list(call.users)
        if call.queue:
            ev["queue"] = call.queue
        out.append(ev)


def route_facts(call: Call) -> RouteFacts:
    """The facts a call's route is decided on, from its first channel (see ``RouteFacts``)."""
    root = call.root
    inbound = call.direction is Direction.IN
    return RouteFacts(
        inbound=inbound,
        to=call.to,
        did=root.exten if root is not None and inbound else "",
        queue=call.queue,
        context=root.context if root is not None else "",
        endpoint=root.endpoint if root is not None else "",
    )

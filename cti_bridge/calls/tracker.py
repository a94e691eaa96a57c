"""The call model's facade: AMI events in, Zammad CTI events out. Pure, synchronous, no I/O.

``CallTracker`` owns the parts and routes each AMI event to the one that handles it:

- ``graph.ChannelGraph``: channels, calls, Local pairs, bridges;
- ``direction.CallSetup``: new channels and who calls whom;
- ``newcall.NewCallGate``: holding an inbound ``newCall`` until the phones ring;
- ``answer.Answers``: who answered;
- ``hangup.Hangups``: how the call ended, and its one ``hangup``;
- ``resync.Resync``: catching up after a reconnect or restart, calls the hook posted.

``HANDLERS`` is the one list of AMI events the call model reads: the AMI filter
(``cti_bridge.ami.wanted``) and the example ``manager_cti.conf`` follow from it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from cti_bridge.calls.answer import Answers
from cti_bridge.calls.direction import CallSetup
from cti_bridge.calls.graph import GONE_MEMORY, ChannelGraph
from cti_bridge.calls.hangup import Hangups
from cti_bridge.calls.model import (
    Call,
    Channel,
    Direction,
    Event,
    channel_endpoint,
    dialled_number,
)
from cti_bridge.calls.newcall import NewCallGate
from cti_bridge.calls.resync import Resync
from cti_bridge.calls.rules import CallRules, Pbx, RouteFacts, RouteRule
from cti_bridge.events import ROUTE_KEY, CtiEvent

__all__ = [
    "GONE_MEMORY",
    "HANDLED_EVENTS",
    "IN",
    "INTERNAL",
    "OUT",
    "Call",
    "CallRules",
    "CallTracker",
    "Channel",
    "RouteFacts",
    "RouteRule",
    "channel_endpoint",
    "dialled_number",
]

log = logging.getLogger(__name__)

IN, OUT, INTERNAL = Direction.IN, Direction.OUT, Direction.INTERNAL


class Handler(NamedTuple):
    """Which part handles an AMI event, and whether the event is part of a call's set-up.

    Set-up events (the fan-out being built) do not release a pending newCall; any other
    event of the call does (see ``newcall``).
    """

    part: type
    method: str
    setup: bool = False


#: AMI event name -> handler (docs/asterisk-ami.md names what each event carries).
HANDLERS: dict[str, Handler] = {
    "Newchannel": Handler(CallSetup, "on_newchannel", setup=True),
    "Newstate": Handler(ChannelGraph, "on_snapshot"),
    "NewCallerid": Handler(ChannelGraph, "on_snapshot", setup=True),
    "NewConnectedLine": Handler(ChannelGraph, "on_snapshot", setup=True),
    "LocalBridge": Handler(ChannelGraph, "on_local_bridge", setup=True),
    "DialBegin": Handler(CallSetup, "on_dial_begin", setup=True),
    "DialState": Handler(Hangups, "on_dial_state"),
    "DialEnd": Handler(Answers, "on_dial_end"),
    "BridgeEnter": Handler(Answers, "on_bridge_enter"),
    "BridgeLeave": Handler(ChannelGraph, "on_bridge_leave"),
    "BridgeDestroy": Handler(ChannelGraph, "on_bridge_destroy"),
    "HangupRequest": Handler(Hangups, "on_hangup_request"),
    "Hangup": Handler(Hangups, "on_hangup"),
    "QueueCallerJoin": Handler(CallSetup, "on_queue_join", setup=True),
    "QueueCallerAbandon": Handler(Hangups, "on_queue_abandon"),
    "AgentCalled": Handler(CallSetup, "on_agent_called", setup=True),
    "AgentConnect": Handler(Answers, "on_agent_connect"),
    # Only VoiceMail() matters (the AMI user's filter lets no other Newexten through); a
    # dialplan step is no sign that the phones ring, so it does not release a newCall.
    "Newexten": Handler(Answers, "on_newexten", setup=True),
}
#: Every AMI event the call model reads; the rest may be filtered out before it.
HANDLED_EVENTS: frozenset[str] = frozenset(HANDLERS)
SETUP_EVENTS: frozenset[str] = frozenset(name for name, h in HANDLERS.items() if h.setup)


class CallTracker:
    """Feed AMI events with ``feed()``; it returns the CTI events they cause, in order."""

    def __init__(
        self, rules: CallRules | None = None, *, clock: Callable[[], float] | None = None
    ) -> None:
        self.rules = rules or CallRules()
        # A live daemon passes time.monotonic so a pending newCall is held for newcall_delay
        # from the moment it was armed; replays leave it None and stay deterministic (the
        # clock then only moves with tick()).
        self._clock = clock
        self._now = 0.0
        self.events_seen = 0
        self.errors = 0
        self._pbx = pbx = Pbx(self.rules)
        self._graph = graph = ChannelGraph(self._time)
        self._gate = gate = NewCallGate(graph, pbx, self._time, SETUP_EVENTS)
        self._answers = answers = Answers(graph, pbx, gate)
        self._ends = ends = Hangups(graph, gate)
        self._setup = setup = CallSetup(graph, pbx, gate, ends)
        self._resync = Resync(graph, gate, answers, ends, self.feed_into, self._seen)
        parts: dict[type, Any] = {
            ChannelGraph: graph,
            CallSetup: setup,
            Answers: answers,
            Hangups: ends,
        }
        # Bound once here: feed() is called for every AMI event.
        self._handlers: dict[str, Callable[[Event, list[CtiEvent]], None]] = {
            name: getattr(parts[h.part], h.method) for name, h in HANDLERS.items()
        }
        self.channels: dict[str, Channel] = graph.channels
        self._pending = gate.pending  # feed() checks it per event: no attribute hops
        self._release_on = gate.release_on
        self.calls: dict[str, Call] = graph.calls

    # ------------------------------------------------------------------ events in

    def feed(self, event: Event) -> list[CtiEvent]:
        """Apply one AMI event; never raises (a bad event is logged and counted)."""
        handler = self._handlers.get(event.get("Event", ""))
        out: list[CtiEvent] = []
        if handler is None:
            return out
        self.events_seen += 1
        try:
            if self._pending:
                self._release_on(event, out)
            handler(event, out)
        except Exception:  # the tracker must survive any stream
            self.errors += 1
            if self.errors <= 10 or self.errors % 1000 == 0:
                log.exception("tracker: could not apply %s event", event.get("Event"))
        return out

    def feed_many(self, events: Iterable[Event]) -> list[CtiEvent]:
        out: list[CtiEvent] = []
        for ev in events:
            out.extend(self.feed(ev))
        return out

    def feed_into(self, event: Event, out: list[CtiEvent]) -> None:
        out.extend(self.feed(event))

    # ------------------------------------------------------------------ time

    @property
    def now(self) -> float:
        """The tracker's time: the clock if it has one, else the last ``tick()``.

        A live daemon ticks only when ``next_deadline()`` is due, so call times come from the
        clock; replays have none and move only with ``tick()`` (deterministic).
        """
        return self._clock() if self._clock is not None else self._now

    def _time(self) -> float:
        return self._clock() if self._clock is not None else self._now

    def _seen(self) -> int:
        return self.events_seen

    def next_deadline(self) -> float | None:
        """When ``tick()`` next has work: a pending newCall's release or a silent call's expiry.

        None when nothing is due, so an idle daemon sleeps. A call not stamped yet (fed before
        the clock started) is due at once: the tick stamps it.
        """
        due = self._gate.next_due()
        if self.calls:
            limit = self.rules.max_call_duration
            expiry = min(c.last_seen + limit if c.last_seen else 0.0 for c in self.calls.values())
            due = expiry if due is None else min(due, expiry)
        return due

    def tick(self, now: float) -> list[CtiEvent]:
        """Advance the clock: release overdue newCalls, forget calls that went silent too long."""
        self._now = now
        out: list[CtiEvent] = []
        self._gate.release_due(now, out)
        limit = self.rules.max_call_duration
        stale = []
        for c in self.calls.values():
            if not c.last_seen:
                c.last_seen = now  # fed before the clock started: count from now
            elif now - c.last_seen > limit:
                stale.append(c)
        for call in stale:
            log.warning("call %s had no event for %.0f s: closing it", call.call_id, limit)
            self._ends.finish(call, out)
        return out

    def flush(self) -> list[CtiEvent]:
        """Release every pending newCall (end of a replay, shutdown)."""
        out: list[CtiEvent] = []
        self._gate.release_all(out)
        return out

    # ------------------------------------------------------------------ the FastAGI hook

    def agi_newcall(
        self,
        *,
        channel: str,
        linkedid: str,
        callerid: str,
        calleridname: str = "",
        callingpres: str = "",
        context: str = "",
        to: str = "",
        queue: str | None = None,
    ) -> CtiEvent | None:
        """Build the newCall for a FastAGI hook and claim it; None when not to be posted.

        Direction follows the same trunk rule as for AMI events, seen from the hook (the
        channel's endpoint first: inside a Gosub or macro the AGI context is the subroutine's).
        """
        caller = {"CallerIDNum": callerid, "CallerIDName": calleridname, "CallingPres": callingpres}
        event = self._setup.hook_newcall(channel, linkedid, caller, context, to)
        if queue:
            event["queue"] = queue
        route = self._pbx.route(self._hook_facts(event, channel, linkedid, context, to))
        if route:
            event[ROUTE_KEY] = route
        if not event["to"] or not self.claim(event):
            return None
        return event

    def _hook_facts(
        self, event: CtiEvent, channel: str, linkedid: str, context: str, to: str
    ) -> RouteFacts:
        """The hook's call, routed on its first channel when AMI has shown it already (the
        hook's own context may be a subroutine's), else on the hook's channel."""
        call = self._graph.linked.get(linkedid) or self.calls.get(linkedid)
        root = call.root if call is not None else None
        queue = event.get("queue", "")
        return RouteFacts(
            inbound=event["direction"] == IN,
            to=str(event["to"]),
            did=to,
            queue=queue if isinstance(queue, str) else "",
            context=root.context if root is not None else context,
            endpoint=root.endpoint if root is not None else channel_endpoint(channel),
        )

    def claim(self, event: CtiEvent) -> bool:
        """Record a newCall posted by the FastAGI hook so the AMI side does not post another.

        Returns False when the tracker already emitted this call's newCall (the hook then must
        not post one either).
        """
        return self._resync.claim(event)

    # ------------------------------------------------------------------ catching up

    def restore(self, open_calls: Iterable[tuple[CtiEvent, bool]]) -> None:
        """Calls a previous run posted a newCall for and no hangup (from the outbox).

        They wait, without channels, for the first resync: the PBX's listing either shows
        them still up (their channels join them) or not (they get their hangup then).
        """
        for event, answered in open_calls:
            cid = str(event.get("callId", ""))
            if cid and cid not in self.calls:
                self._resync.ghost(event, answered=answered)

    def mark(self) -> int:
        """A point in the stream (a login); ``resync(..., since=mark)`` spares what came later."""
        return self._resync.mark()

    def resync(self, channels: Sequence[Event], since: int | None = None) -> list[CtiEvent]:
        """Reconcile with a CoreShowChannels listing taken after a (re)connect.

        Channels we track that Asterisk no longer has ended while we were blind: they are
        hung up here (their calls get a hangup). Channels we do not know began while we were
        blind: they are tracked from now on, as if their Newchannel had arrived. Events keep
        flowing while the listing is built, so a channel first seen after ``since`` (the mark
        taken when the listing was requested) is newer than the listing and stays.
        """
        return self._resync.resync(channels, since)

    # ------------------------------------------------------------------ status

    def root_channel(self, call_id: str) -> str | None:
        """The name of a live call's root channel (for an AMI Hangup), if it is still up."""
        call = self.calls.get(call_id)
        if call is None or call.root is None or call.root.uid not in call.channels:
            return None
        return call.root.name

    @property
    def active_calls(self) -> int:
        return len(self.calls)

    def residue(self) -> dict[str, int]:
        """Sizes of the inner indexes: all 0 once every call has ended (bench, tests)."""
        graph = self._graph
        return {
            "linked": len(graph.linked),
            "bridges": len(graph.bridges),
            "local_wait": len(graph.local_wait),
            "pending": len(self._gate.pending),
        }

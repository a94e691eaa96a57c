"""Catching up after being blind: an AMI reconnect, a restart, a call the hook posted.

Events sent while the AMI connection is down are lost
(docs/asterisk-ami.md#10-resync-after-a-reconnect). After every login the PBX's channel
listing is reconciled with the graph. Calls can also be known before any of their channels: a
newCall the FastAGI hook posted (``claim``), or one a previous run posted and never hung up
(``restore``, from the outbox). Such a "ghost" call waits for its channels; if the next
listing does not show it, it gets its hangup.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cti_bridge.calls.answer import Answers
from cti_bridge.calls.graph import ChannelGraph
from cti_bridge.calls.hangup import Hangups
from cti_bridge.calls.model import Call, Direction, Event, NewCallState
from cti_bridge.calls.newcall import NewCallGate
from cti_bridge.events import CtiEvent

Feed = Callable[[Event, list[CtiEvent]], None]


class Resync:
    """Ghost calls and the reconciliation with a ``CoreShowChannels`` listing."""

    def __init__(
        self,
        graph: ChannelGraph,
        gate: NewCallGate,
        answers: Answers,
        ends: Hangups,
        feed_into: Feed,
        events_seen: Callable[[], int],
    ) -> None:
        self._graph = graph
        self._channels = graph.channels  # the same dict for the graph's lifetime
        self._gate = gate
        self._answers = answers
        self._ends = ends
        self._feed_into = feed_into  # the tracker's own feed: a listing replays as events
        self._events_seen = events_seen
        self._seen_at_mark = 0

    def mark(self) -> int:
        self._graph.epoch += 1
        self._seen_at_mark = self._events_seen()
        return self._graph.epoch

    # ------------------------------------------------------------------ ghost calls

    def claim(self, event: CtiEvent) -> bool:
        cid = str(event.get("callId", ""))
        graph = self._graph
        call = graph.linked.get(cid) or graph.calls.get(cid)
        if call is not None:
            if call.newcall_state is NewCallState.SENT:
                return False
            self._adopt_claim(call, event)
            return True
        self.ghost(event, answered=False)
        return True

    def ghost(self, event: CtiEvent, *, answered: bool) -> Call:
        """A call known from its posted newCall before (or without) any of its channels."""
        cid = str(event.get("callId", ""))
        call = self._graph.new_call(cid, born=self._graph.epoch)
        self._adopt_claim(call, event)
        call.answered = answered
        return call

    def _adopt_claim(self, call: Call, event: CtiEvent) -> None:
        """Take over what Zammad was told, so later events continue that row."""
        call.claimed = True
        call.newcall_state = NewCallState.SENT
        self._gate.pending.pop(call.call_id, None)
        posted = str(event.get("direction", call.direction or Direction.IN))
        # Only "in"/"out" are ever posted; anything else is a damaged row, kept inbound.
        call.direction = Direction._value2member_map_.get(posted, Direction.IN)  # type: ignore[assignment]
        call.from_ = str(event.get("from", call.from_))
        call.to = str(event.get("to", call.to))
        users = event.get("user[]")
        if isinstance(users, list):
            call.users = list(users)
        queue = event.get("queue")
        if isinstance(queue, str) and queue:
            call.queue = queue

    # ------------------------------------------------------------------ resync

    def resync(self, channels: Sequence[Event], since: int | None) -> list[CtiEvent]:
        """Reconcile with a listing; see ``CallTracker.resync`` for the contract."""
        out: list[CtiEvent] = []
        graph = self._graph
        listed = {ch.get("Uniqueid", ""): ch for ch in channels}
        if since is None:
            since = self.mark()
        gone = [u for u, c in graph.channels.items() if u not in listed and c.born < since]
        for uid in gone:
            self._feed_into({"Event": "Hangup", "Uniqueid": uid, "Cause": ""}, out)
        # Roots first (oldest first) so that later channels find their call.
        fresh = [
            ch
            for uid, ch in listed.items()
            if uid and uid not in graph.channels and uid not in graph.gone
        ]
        fresh.sort(key=lambda ch: (ch.get("Uniqueid") != ch.get("Linkedid"), ch.get("Uniqueid")))
        first_start = self._seen_at_mark == 0
        adopted = self._adopt(fresh, out)
        self._rebuild_legs(fresh, listed, adopted, out)
        self._rebuild_bridges(fresh, quiet=first_start, out=out)
        # Calls that began while we were blind are posted now, not after newcall_delay.
        for call in adopted:
            if call.newcall_state is NewCallState.PENDING:
                self._gate.emit(call, out)
        # Calls known only from their newCall (the hook posted it, or a previous run did) that
        # the PBX no longer lists ended while we were blind.
        for call in [c for c in graph.calls.values() if not c.channels and c.born < since]:
            self._ends.finish(call, out)
        return out

    def _adopt(self, fresh: list[Event], out: list[CtiEvent]) -> set[Call]:
        """Track listed channels we did not know, as if their Newchannel had arrived."""
        for ch in fresh:
            ev = dict(ch)
            ev["Event"] = "Newchannel"
            self._feed_into(ev, out)
            if ch.get("ChannelStateDesc") == "Up" or ch.get("ChannelState") == "6":
                self._feed_into({**ev, "Event": "Newstate"}, out)
        channels = self._channels
        return {channels[u].call for u in (c.get("Uniqueid", "") for c in fresh) if u in channels}

    def _rebuild_legs(
        self,
        fresh: list[Event],
        listed: dict[str, Event],
        adopted: set[Call],
        out: list[CtiEvent],
    ) -> None:
        """Who each adopted root is dialling: the root's Dial() arguments name the legs."""
        channels = self._channels
        for ch in fresh:
            uid = ch.get("Uniqueid", "")
            mine = channels.get(uid)
            if mine is None or mine.call not in adopted or mine is mine.call.root:
                continue
            root = mine.call.root
            if root is not None and not mine.is_local and mine.parent is None:
                dial = listed.get(root.uid, {})
                args = dial.get("ApplicationData", "") if dial.get("Application") == "Dial" else ""
                self._feed_into(
                    {
                        "Event": "DialBegin",
                        "Uniqueid": root.uid,
                        "DestUniqueid": uid,
                        "DialString": args.split(",", 1)[0],
                    },
                    out,
                )

    def _rebuild_bridges(self, fresh: list[Event], *, quiet: bool, out: list[CtiEvent]) -> None:
        """Who shares a bridge, from ``BridgeId``.

        After a restart (``quiet``) the previous run posted the answers of calls that were
        already up; posting them again would reset Zammad's timing. After a reconnect it did not.
        """
        self._answers.quiet = quiet
        try:
            for ch in fresh:
                if ch.get("BridgeId") and ch.get("Uniqueid", "") in self._channels:
                    self._feed_into(
                        {
                            "Event": "BridgeEnter",
                            "BridgeUniqueid": ch["BridgeId"],
                            "Uniqueid": ch["Uniqueid"],
                        },
                        out,
                    )
        finally:
            self._answers.quiet = False

"""The channel graph: which channels exist, which call each belongs to, and how they connect.

An explicit graph (an idea from cacofonisk) rather than per-call flags: who dialled whom
(``Channel.parent``), which Local halves belong together (``Channel.peer``,
docs/asterisk-ami.md#3-local-channels) and which channels share a bridge
(docs/asterisk-ami.md#5-bridges-and-what-counts-as-an-answer). Channels are mapped
Uniqueid -> call once, so Local halves, ring groups, queues, pickups and transfers stay in one
call, and a Linkedid relabelled on bridge entry never splits a call.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from cti_bridge.calls.model import Call, Channel, Event, update_caller_id
from cti_bridge.events import CtiEvent

#: How many hung-up channels are remembered (see ``ChannelGraph.gone``).
GONE_MEMORY = 20000
#: Local hops followed when looking for the devices bridged with a channel: a bound, so a
#: malformed stream with a Local loop cannot hang the tracker.
MAX_HOPS = 64


class ChannelGraph:
    """Channels by Uniqueid, calls by id, Local pairs, bridges and recently gone channels."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.now = clock  # the tracker's time
        self.channels: dict[str, Channel] = {}
        self.calls: dict[str, Call] = {}
        # Linkedid -> call, for channels created after a relabel or by a known channel.
        self.linked: dict[str, Call] = {}
        self.bridges: dict[str, set[str]] = {}
        self.local_wait: dict[str, Channel] = {}  # Local base name -> ;1 half
        # Recently hung-up channels: a late duplicate Newchannel or a resync listing taken
        # before their Hangup must not bring them back. Bounded, oldest forgotten first.
        self.gone: OrderedDict[str, None] = OrderedDict()
        self.epoch = 0  # bumped by CallTracker.mark(): what existed before a listing

    # ------------------------------------------------------------------ calls

    def call_for(self, linkedid: str) -> Call | None:
        """The call a new channel joins: by its Linkedid, or the call of that channel."""
        call = self.linked.get(linkedid)
        if call is not None:
            return call
        known = self.channels.get(linkedid)
        return known.call if known is not None else None

    def new_call(self, call_id: str, *, born: int = 0) -> Call:
        """Start tracking a call; ``born`` is the resync epoch for calls known only by id."""
        call = Call(call_id=call_id, last_seen=self.now(), born=born)
        self.calls[call_id] = call
        self.linked[call_id] = call
        return call

    def forget(self, call: Call) -> None:
        """Drop a finished call and whatever of it is still in the graph."""
        for uid, ch in call.channels.items():
            self.channels.pop(uid, None)
            self.leave(ch)
            if ch.is_local and self.local_wait.get(ch.local_base) is ch:
                del self.local_wait[ch.local_base]
        call.channels.clear()
        self.calls.pop(call.call_id, None)
        for key in [k for k, c in self.linked.items() if c is call]:
            del self.linked[key]
        call.legs.clear()

    # ------------------------------------------------------------------ channels

    def add(self, ch: Channel) -> None:
        """Register a new channel; a Local ``;2`` half finds its ``;1`` by name."""
        call = ch.call
        self.channels[ch.uid] = ch
        call.channels[ch.uid] = ch
        call.last_seen = self.now()
        if ch.is_local:
            base = ch.local_base
            if ch.name.endswith(";1"):
                self.local_wait[base] = ch
            elif ch.name.endswith(";2"):
                one = self.local_wait.pop(base, None)
                if one is not None:
                    self.pair(one, ch)

    def remove(self, uid: str) -> Channel | None:
        """Take a hung-up channel out of the graph (and remember it is gone)."""
        ch = self.channels.pop(uid, None)
        if ch is None:
            return None
        self.gone[uid] = None
        if len(self.gone) > GONE_MEMORY:
            self.gone.popitem(last=False)
        self.leave(ch)
        if ch.is_local:
            base = ch.local_base
            if self.local_wait.get(base) is ch:
                del self.local_wait[base]
        ch.call.channels.pop(uid, None)
        return ch

    def pair(self, one: Channel, two: Channel) -> None:
        one.peer, two.peer = two, one
        two.parent = one
        call = one.call
        if call.root is one:
            two.side_a = True  # an originate: the ;2 half rings the A party first
        else:
            two.side_a = one.side_a

    def on_local_bridge(self, ev: Event, out: list[CtiEvent]) -> None:
        """Pair Local halves their names did not (docs/asterisk-ami.md#3-local-channels)."""
        one = self.channels.get(ev.get("LocalOneUniqueid", ""))
        two = self.channels.get(ev.get("LocalTwoUniqueid", ""))
        if one is not None and two is not None and one.peer is None:
            self.local_wait.pop(one.local_base, None)
            self.pair(one, two)

    def on_snapshot(self, ev: Event, out: list[CtiEvent]) -> None:
        ch = self.channels.get(ev.get("Uniqueid", ""))
        if ch is None:
            return
        update_caller_id(ch, ev)

    # ------------------------------------------------------------------ bridges

    def enter(self, ch: Channel, bid: str, swap: str | None) -> set[str]:
        """Put a channel in a bridge (a ``SwapUniqueid`` leaves it); returns the members."""
        members = self.bridges.setdefault(bid, set())
        if swap:
            members.discard(swap)
        if ch.bridge and ch.bridge != bid:
            self.leave(ch)
        members.add(ch.uid)
        ch.bridge = bid
        return members

    def leave(self, ch: Channel) -> None:
        if ch.bridge is None:
            return
        members = self.bridges.get(ch.bridge)
        if members is not None:
            members.discard(ch.uid)
            if not members:
                del self.bridges[ch.bridge]
        ch.bridge = None

    def on_bridge_leave(self, ev: Event, out: list[CtiEvent]) -> None:
        ch = self.channels.get(ev.get("Uniqueid", ""))
        if ch is not None and ch.bridge == ev.get("BridgeUniqueid"):
            self.leave(ch)

    def on_bridge_destroy(self, ev: Event, out: list[CtiEvent]) -> None:
        members = self.bridges.pop(ev.get("BridgeUniqueid", ""), None)
        for uid in members or ():
            ch = self.channels.get(uid)
            if ch is not None:
                ch.bridge = None

    def devices_of(self, start: Channel) -> list[Channel]:
        """Real devices bridged with ``start``, following Local halves (bounded walk)."""
        found: list[Channel] = []
        seen = {start.uid}
        todo = [start]
        steps = 0
        while todo and steps < MAX_HOPS:
            steps += 1
            ch = todo.pop()
            if ch.bridge is None:
                continue
            for uid in self.bridges.get(ch.bridge, ()):
                if uid in seen:
                    continue
                seen.add(uid)
                m = self.channels.get(uid)
                if m is None:
                    continue
                if m.is_local:
                    if m.peer is not None and m.peer.uid not in seen:
                        seen.add(m.peer.uid)
                        todo.append(m.peer)
                else:
                    found.append(m)
        return found

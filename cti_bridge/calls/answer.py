"""Answer detection: when the caller is connected to a person, Zammad gets an ``answer``.

The caller (the root, or the A party of an originate) counts as answered when it shares a
bridge, through any number of Local hops, with a real device; when its own ``Dial()`` ends
``ANSWER`` on a non-Local leg; or when a queue reports ``AgentConnect`` of a non-Local member
(docs/asterisk-ami.md#5-bridges-and-what-counts-as-an-answer). A PBX, IVR, queue or voicemail
answering the caller is no bridge with a device, and an inner leg answering behind a Local
channel that the caller's own Dial has not answered is no bridge with the caller either. A
later bridge with another device (a transfer) gives one more ``answer``.
"""

from __future__ import annotations

from cti_bridge.calls.graph import ChannelGraph
from cti_bridge.calls.model import Call, Channel, Event, NewCallState, base_event
from cti_bridge.calls.newcall import NewCallGate
from cti_bridge.calls.rules import Pbx
from cti_bridge.events import CtiEvent

_PENDING, _SENT = NewCallState.PENDING, NewCallState.SENT


class Answers:
    """Decides who answered a call and posts the ``answer`` events."""

    def __init__(self, graph: ChannelGraph, pbx: Pbx, gate: NewCallGate) -> None:
        # Resync after a restart rebuilds answers the previous run already posted: posting
        # them again would reset Zammad's call timing, so they are recorded silently.
        self.quiet = False
        self._pbx, self._gate = pbx, gate
        self._graph = graph
        self._channels = graph.channels  # the same dict for the graph's lifetime

    def on_bridge_enter(self, ev: Event, out: list[CtiEvent]) -> None:
        bid = ev.get("BridgeUniqueid", "")
        ch = self._channels.get(ev.get("Uniqueid", ""))
        if not bid or ch is None:
            return
        members = self._graph.enter(ch, bid, ev.get("SwapUniqueid"))
        self.check(ch.call, out)
        # A transfer can bridge a device of another call with this one's caller.
        channels = self._channels
        for uid in members:
            other = channels.get(uid)
            if other is not None and other.call is not ch.call:
                self.check(other.call, out)

    def on_agent_connect(self, ev: Event, out: list[CtiEvent]) -> None:
        dest = self._channels.get(ev.get("DestUniqueid", ""))
        if dest is None or dest.is_local:
            return
        call = dest.call
        if call.answered_by is None:
            self.answered(call, dest, out)

    def on_dial_end(self, ev: Event, out: list[CtiEvent]) -> None:
        """Record a leg's Dial status; the caller's own Dial tells answered or gave up.

        docs/causes.md#1-what-the-tracker-records: the first status of a leg is kept, an
        ``ANSWER`` replaces it.
        """
        channels = self._channels
        dest = channels.get(ev.get("DestUniqueid", ""))
        if dest is None:
            return
        status = ev.get("DialStatus", "")
        call = dest.call
        call.last_seen = self._graph.now()
        if ev.get("Forward"):
            call.forwarded = True
        if not dest.dial_status or status == "ANSWER":
            dest.dial_status = status
        src = channels.get(ev.get("Uniqueid", ""))
        if src is None or src is not call.caller:
            return
        if status == "ANSWER" and not dest.is_local:
            self.answered(call, dest, out)
        elif status == "CANCEL" and not any(leg.dial_status == "ANSWER" for leg in call.legs):
            # The caller's own Dial was cancelled with no leg answering: the caller gave up.
            if ev.get("Forward"):
                call.forwarded = True
            elif not call.answered:
                call.caller_cancelled = True

    def check(self, call: Call, out: list[CtiEvent]) -> None:
        """Is the call's caller now bridged with a device it was not answered by yet?"""
        party = call.root if call.root is not None and call.root.is_local else call.caller
        if party is None or call.silent:
            return
        devices = self._graph.devices_of(party)
        if not devices:
            return
        if call.answered_by is not None and any(d is call.answered_by for d in devices):
            return
        device = next((d for d in devices if d is not call.caller), None)
        if device is not None:
            self.answered(call, device, out)

    def answered(self, call: Call, device: Channel, out: list[CtiEvent]) -> None:
        """``device`` took the call: post ``answer`` once per device (a pending newCall first)."""
        if call.answered_by is device or device is call.caller:
            return
        call.answered = True
        call.answered_by = device
        if device.uid in call.answered_uids:
            return
        call.answered_uids.add(device.uid)
        if call.newcall_state is _PENDING:
            self._gate.emit(call, out)
        if call.newcall_state is not _SENT or self.quiet:
            return
        ev = base_event(call, "answer")
        pbx = self._pbx
        if device.is_trunk:
            number = pbx.numbers.external(device.dialled or device.callerid_num)
            if number:
                ev["answeringNumber"] = number
        else:
            name = pbx.user_name(device)
            if name:
                ev["user"] = name
            ext = pbx.extension(device)
            if ext:
                ev["answeringNumber"] = ext
        out.append(ev)

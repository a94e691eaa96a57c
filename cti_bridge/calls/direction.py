"""Call set-up: who calls whom, decided from the root and its first real leg.

docs/asterisk-ami.md#9-direction: a trunk root is ``in``; a phone whose first real leg is a
trunk is ``out``; phone to phone is internal (posted as ``in`` only with ``report_internal``).
An originated call (a Local root: click-to-dial, call-me-now) has an A side (the root's ``;2``
half, rung first) and a B side (what the root dials once A answered). What is learnt here is
what the ``newCall`` says: ``from``, ``to``, ``user[]``, ``queue``.
"""

from __future__ import annotations

from cti_bridge.calls.graph import ChannelGraph
from cti_bridge.calls.hangup import Hangups
from cti_bridge.calls.model import (
    Call,
    Channel,
    Direction,
    Event,
    NewCallState,
    dialled_number,
    presentation_restricted,
    update_caller_id,
)
from cti_bridge.calls.newcall import NewCallGate
from cti_bridge.calls.rules import Pbx, Vantage
from cti_bridge.events import CtiEvent
from cti_bridge.numbers import ANONYMOUS, NumberPlan

IN, OUT, INTERNAL = Direction.IN, Direction.OUT, Direction.INTERNAL
_SENT = NewCallState.SENT


class CallSetup:
    """Creates calls and channels from ``Newchannel`` and decides each call's direction."""

    def __init__(self, graph: ChannelGraph, pbx: Pbx, gate: NewCallGate, ends: Hangups) -> None:
        self._graph = graph
        self._channels = graph.channels  # the same dict for the graph's lifetime
        self._pbx = pbx
        self._gate = gate
        self._ends = ends

    def on_newchannel(self, ev: Event, out: list[CtiEvent]) -> None:
        graph = self._graph
        uid = ev.get("Uniqueid", "")
        linkedid = ev.get("Linkedid", "")
        name = ev.get("Channel", "")
        if not uid or not linkedid or not name or uid in graph.channels or uid in graph.gone:
            return
        call = graph.call_for(linkedid)
        # The root of a call whose newCall the hook posted (or a previous run) arrives now.
        is_root = call is not None and call.root is None and uid == linkedid and not call.channels
        if call is None:
            if len(graph.calls) >= self._pbx.rules.max_calls:
                self._ends.evict(out)
            call = graph.new_call(linkedid)
            if uid == linkedid:
                is_root = True
            else:
                call.silent = True  # joined mid-call: we never saw its start
        ch = Channel(uid, name, call)
        ch.born = graph.epoch
        ch.context = ev.get("Context", "")
        ch.exten = ev.get("Exten", "")
        update_caller_id(ch, ev)
        ch.is_trunk = self._pbx.is_trunk(
            ch.endpoint,
            ch.context,
            vantage=Vantage.ROOT if is_root else Vantage.LEG,
            local=ch.is_local,
            caller_id=bool(ch.first_num),
        )
        graph.add(ch)
        if is_root:
            call.root = ch
            self._classify_root(call, ch)

    def _classify_root(self, call: Call, root: Channel) -> None:
        if call.newcall_state is _SENT:
            # Already posted: keep what Zammad has, only learn who the caller is.
            if not root.is_local:
                call.caller = root
            return
        if root.is_trunk:
            call.direction = IN
            call.caller = root
            call.to = self._pbx.numbers.external(root.exten) or root.exten
            self._gate.arm(call)
        elif root.is_local:
            call.direction = None  # an originate: decided when the B side is dialled
        else:
            call.caller = root

    def on_dial_begin(self, ev: Event, out: list[CtiEvent]) -> None:
        """A new leg: the graph learns who dialled it, the call maybe its direction."""
        channels = self._channels
        dest = channels.get(ev.get("DestUniqueid", ""))
        if dest is None:
            return
        src = channels.get(ev.get("Uniqueid", ""))
        update_caller_id(dest, ev, "Dest")
        if src is not None:
            update_caller_id(src, ev)
        call = dest.call
        call.last_seen = self._graph.now()
        if dest is call.root:
            return  # an originate dialling its own first Local half
        if src is not None and dest.parent is None:
            dest.parent = src
            dest.side_a = src.side_a or (src is call.root.peer if call.root else False)
            if dest.peer is not None:
                dest.peer.side_a = dest.side_a
        if dest.is_local or call.silent:
            if not call.fanout and call.direction is IN:
                call.fanout = True
            return
        dest.dialled = dialled_number(ev.get("DialString", ""))
        call.legs.append(dest)
        if call.root is not None and call.root.is_local:
            self._originate_leg(call, dest, out)
        elif call.direction is None:
            self._phone_leg(call, dest, out)
        if call.direction is IN or call.direction is INTERNAL:
            self._add_user(call, dest)
            call.fanout = True

    def _phone_leg(self, call: Call, dest: Channel, out: list[CtiEvent]) -> None:
        """A phone's call: its first real leg decides between out and internal."""
        caller = call.caller
        if caller is None:
            return
        pbx = self._pbx
        call.from_ = pbx.extension(caller)
        if dest.is_trunk:
            call.direction = OUT
            call.to = pbx.numbers.external(dest.dialled) or pbx.numbers.external(caller.exten)
            name = pbx.user_name(caller)
            call.users = [name] if name else []
            self._gate.emit(call, out)
        else:
            call.direction = INTERNAL
            call.to = NumberPlan.digits(caller.exten) or caller.exten
            self._gate.arm(call)

    def _originate_leg(self, call: Call, dest: Channel, out: list[CtiEvent]) -> None:
        """A Local root (click-to-dial, call-me-now): A side first, then the B side."""
        if dest.side_a:
            if call.caller is None:
                call.caller = dest
            return
        if call.direction is not None or call.caller is None:
            return
        pbx = self._pbx
        a = call.caller
        call.from_ = (
            pbx.numbers.caller(a.dialled or a.callerid_num) if a.is_trunk else pbx.extension(a)
        )
        if dest.is_trunk:
            call.direction = OUT
            call.to = pbx.numbers.external(dest.dialled)
            name = "" if a.is_trunk else pbx.user_name(a)
            call.users = [name] if name else []
            self._gate.emit(call, out)
        elif a.is_trunk:
            call.direction = IN
            call.to = pbx.extension(dest)
            self._gate.arm(call)
        else:
            call.direction = INTERNAL
            call.to = pbx.extension(dest)
            name = pbx.user_name(a)
            call.users = [name] if name else []
            call.fanout = True
            self._gate.arm(call)

    def _add_user(self, call: Call, ch: Channel) -> None:
        if ch.is_trunk:
            return
        name = self._pbx.user_name(ch)
        if name and name not in call.users and call.newcall_state is not _SENT:
            call.users.append(name)

    def on_queue_join(self, ev: Event, out: list[CtiEvent]) -> None:
        ch = self._channels.get(ev.get("Uniqueid", ""))
        if ch is not None and ev.get("Queue") and not ch.call.queue:
            ch.call.queue = ev.get("Queue", "")

    def on_agent_called(self, ev: Event, out: list[CtiEvent]) -> None:
        """A queue rings an agent: the call's fan-out (docs/asterisk-ami.md#8-queue-events)."""
        ch = self._channels.get(ev.get("Uniqueid", ""))
        if ch is None:
            return
        call = ch.call
        if ev.get("Queue") and not call.queue:
            call.queue = ev.get("Queue", "")
        if call.direction is IN:
            call.fanout = True

    def hook_newcall(
        self, channel: str, linkedid: str, caller: Event, context: str, to: str
    ) -> CtiEvent:
        """The newCall of a call that runs the FastAGI hook, built from the hook's variables.

        ``caller`` holds ``CallerIDNum``, ``CallerIDName`` and ``CallingPres``. Direction is
        decided by the same trunk rule as on AMI, seen from the hook (``Vantage.HOOK``).
        """
        ch = Channel(linkedid, channel, Call(call_id=linkedid))
        ch.context = context
        update_caller_id(ch, caller)
        if caller.get("CallingPres"):
            ch.hidden = presentation_restricted(caller["CallingPres"])
        pbx = self._pbx
        number = pbx.numbers.external(to) or to
        if pbx.is_trunk(ch.endpoint, context, vantage=Vantage.HOOK, local=ch.is_local):
            callerid = caller.get("CallerIDNum", "")
            return {
                "event": "newCall",
                "from": pbx.numbers.caller(callerid) if not ch.hidden else ANONYMOUS,
                "to": number,
                "direction": IN.value,
                "callId": linkedid,
                "user[]": [],
            }
        name = pbx.user_name(ch)
        return {
            "event": "newCall",
            "from": pbx.extension(ch) or ANONYMOUS,
            "to": number,
            "direction": OUT.value,
            "callId": linkedid,
            "user[]": [name] if name else [],
        }

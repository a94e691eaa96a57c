"""The call model: AMI events in, Zammad CTI events out. Pure, synchronous, no I/O.

A call is everything that shares the Linkedid of its first (root) channel; ``callId`` is that
Linkedid. Channels are mapped Uniqueid -> call once, so Local ``;1``/``;2`` halves, ring groups,
queues, pickups and transfers stay in one call, and Linkedid relabelling on bridge entry never
splits a call (asterisk-ami.md section 1).

The tracker keeps an explicit channel graph (an idea from cacofonisk): who dialled whom
(``parent``), which Local halves belong together (``peer``) and which channels share a bridge.
From it:

* direction is decided on the root: a trunk endpoint or trunk context is ``in``; a phone whose
  first real leg is a trunk is ``out``; phone to phone is internal (posted as ``in`` only with
  ``report_internal``). Originated calls (a Local root) have an A side (the ``;2`` half of the
  root, rung first) and a B side (what the root dials after A answered).
* ``answer`` is emitted when the caller (the root, or the A party of an originate) is bridged,
  through any number of Local hops, with a real device. A PBX, IVR, queue or voicemail
  answering the caller is no bridge with a device, and an inner leg answering behind a Local
  channel that the caller's own Dial has not answered is no bridge with the caller either.
  A later bridge with another device (a transfer) gives one more ``answer``.
* ``hangup`` is emitted once, when the last channel of the call is gone, with a cause derived
  from the call's history by the table in asterisk-ami.md section 3.

Inbound ``newCall`` waits until the first fan-out of the call has been seen (DialBegin,
AgentCalled...) so that ``user[]`` can name the users whose phones ring; any other event of the
call, the call's end, or ``tick()`` after ``newcall_delay`` seconds releases it.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cti_bridge.config import Config, NumbersConfig, PbxConfig
from cti_bridge.events import CtiEvent
from cti_bridge.numbers import ANONYMOUS, NumberPlan

log = logging.getLogger(__name__)

Event = Mapping[str, str]

IN, OUT, INTERNAL = "in", "out", "internal"

# Events that belong to a call's set-up fan-out: they do not release a pending inbound newCall.
_SETUP_EVENTS = frozenset(
    {
        "Newchannel",
        "NewCallerid",
        "NewConnectedLine",
        "NewAccountCode",
        "LocalBridge",
        "DialBegin",
        "QueueCallerJoin",
        "AgentCalled",
        "VarSet",
        "Newexten",
    }
)

_NOT_FOUND = frozenset({1, 2, 3, 20, 22, 28})
_CONGESTION = frozenset({27, 34, 38, 41, 42, 44, 58, 102, 127})
_NO_ANSWER = frozenset({0, 16, 18, 19, 21, 31})
_BUSY = 17
_FORWARDED = 23
_ANSWERED_ELSEWHERE = 26

GONE_MEMORY = 20000

_CHANNEL_NAME = re.compile(r"^([^/]+)/(.+?)(?:-[0-9a-fA-F]+)?(;[12])?$")


def _cause(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _presentation_restricted(value: str) -> bool:
    """``CID-CallingPres: 33 (Presentation Prohibited, Passed Screen)``: bits 0x60 set."""
    head = value.split(" ", 1)[0]
    try:
        return bool(int(head) & 0x60)
    except ValueError:
        return "prohibited" in value.lower() or "unavailable" in value.lower()


def _known(value: str | None) -> str:
    """AMI sends empty caller-id fields as the literal ``<unknown>``."""
    if not value or value == "<unknown>":
        return ""
    return value


class Channel:
    """One Asterisk channel, as far as the call model needs it."""

    __slots__ = (
        "born",
        "bridge",
        "call",
        "cid_name",
        "cid_num",
        "context",
        "dial_status",
        "dialled",
        "endpoint",
        "exten",
        "first_num",
        "hangup_cause",
        "hidden",
        "is_local",
        "is_trunk",
        "name",
        "parent",
        "peer",
        "side_a",
        "uid",
    )

    def __init__(self, uid: str, name: str, call: Call) -> None:
        self.uid = uid
        self.name = name
        self.call = call
        self.born = 0
        self.is_local = name.startswith("Local/")
        m = _CHANNEL_NAME.match(name)
        self.endpoint = m.group(2) if m and not self.is_local else ""
        self.is_trunk = False
        self.context = ""
        self.exten = ""
        self.cid_num = ""
        self.cid_name = ""
        self.first_num = ""
        self.hidden = False
        self.parent: Channel | None = None
        self.peer: Channel | None = None
        self.side_a = False
        self.bridge: str | None = None
        self.dial_status = ""
        self.dialled = ""
        self.hangup_cause: int | None = None

    @property
    def local_base(self) -> str:
        return self.name[:-2] if self.is_local and self.name[-2:] in (";1", ";2") else ""


@dataclass(eq=False)
class Call:
    """A call: a tree of channels under one root, and what happened to it so far."""

    call_id: str
    root: Channel | None = None
    channels: dict[str, Channel] = field(default_factory=dict)
    direction: str | None = None
    # The party that places the call: the root, or for an originate the A-side device.
    caller: Channel | None = None
    from_: str = ""
    to: str = ""
    users: list[str] = field(default_factory=list)
    queue: str = ""
    newcall_state: int = 0  # 0 none, 1 pending (armed), 2 sent
    armed_at: float = 0.0
    fanout: bool = False
    external: bool = False  # newCall posted by the FastAGI hook
    answered: bool = False
    answered_by: Channel | None = None
    answered_uids: set[str] = field(default_factory=set)
    caller_cancelled: bool = False
    forwarded: bool = False
    legs: list[Channel] = field(default_factory=list)
    last_seen: float = 0.0
    silent: bool = False  # attached mid-call: never posted
    born: int = 0  # resync epoch at creation (see CallTracker.mark)


@dataclass(frozen=True)
class CallRules:
    """What the tracker needs to know about this PBX; built from the config."""

    trunk_endpoints: tuple[str, ...] = ()
    trunk_contexts: tuple[str, ...] = ("from-trunk", "from-pstn", "from-trunk-*", "from-pstn-*")
    internal_contexts: tuple[str, ...] = ("from-internal", "from-internal-*")
    report_internal: bool = False
    users: Mapping[str, str] = field(default_factory=dict)
    numbers: NumbersConfig = field(default_factory=NumbersConfig)
    newcall_delay: float = 0.5
    max_call_duration: float = 4 * 3600.0
    max_calls: int = 20000

    @classmethod
    def from_config(cls, cfg: Config) -> CallRules:
        pbx: PbxConfig = cfg.pbx
        return cls(
            trunk_endpoints=pbx.trunk_endpoints,
            trunk_contexts=pbx.trunk_contexts,
            internal_contexts=pbx.internal_contexts,
            report_internal=pbx.report_internal,
            users=dict(cfg.users),
            numbers=cfg.numbers,
            max_call_duration=pbx.max_call_duration,
            max_calls=pbx.max_calls,
        )

    def _matcher(self, patterns: Iterable[str]) -> Callable[[str], bool]:
        exact = frozenset(p for p in patterns if not any(c in p for c in "*?["))
        globs = tuple(re.compile(fnmatch.translate(p)) for p in patterns if p not in exact)

        def match(value: str) -> bool:
            return bool(value) and (value in exact or any(g.match(value) for g in globs))

        return match

    def endpoint_is_trunk(self) -> Callable[[str], bool]:
        return self._matcher(self.trunk_endpoints)

    def context_is_trunk(self) -> Callable[[str], bool]:
        return self._matcher(self.trunk_contexts)


def channel_endpoint(name: str) -> str:
    """``PJSIP/carrier-0000001b`` -> ``carrier``; Local channels have no endpoint."""
    if name.startswith("Local/"):
        return ""
    m = _CHANNEL_NAME.match(name)
    return m.group(2) if m else ""


def dialled_number(dial_string: str) -> str:
    """The number in a Dial string: ``4917..@carrier``, ``carrier/4917..``, ``4917..``."""
    s = dial_string.split("&", 1)[0]
    if "@" in s:
        s = s.split("@", 1)[0]
        s = s.rsplit("/", 1)[-1]
    elif "/" in s:
        s = s.split("/")[1] if s.count("/") >= 1 else s
    if s.startswith("sip:"):
        s = s[4:].split("@", 1)[0]
    return s


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
        self._is_trunk_endpoint = self.rules.endpoint_is_trunk()
        self._is_trunk_context = self.rules.context_is_trunk()
        self._is_internal_ctx = self.rules._matcher(self.rules.internal_contexts)
        self._numbers = NumberPlan(self.rules.numbers)
        self.channels: dict[str, Channel] = {}
        self.calls: dict[str, Call] = {}
        # Linkedid -> call, for channels created after a relabel or by a known channel.
        self._linked: dict[str, Call] = {}
        self._bridges: dict[str, set[str]] = {}
        self._local_wait: dict[str, Channel] = {}  # Local base name -> ;1 half
        self._epoch = 0  # bumped by mark(): what existed before a listing was requested
        self._seen_at_mark = 0
        self._pending: dict[str, Call] = {}
        # Recently hung-up channels: a late duplicate Newchannel or a resync listing taken
        # before their Hangup must not bring them back. Bounded, oldest forgotten first.
        self._gone: OrderedDict[str, None] = OrderedDict()
        self._quiet = False  # resync after a restart: rebuild answers without posting them
        self._now = 0.0
        self.events_seen = 0
        self.errors = 0
        self._handlers: dict[str, Callable[[Event, list[CtiEvent]], None]] = {
            "Newchannel": self._on_newchannel,
            "Newstate": self._on_snapshot,
            "NewCallerid": self._on_snapshot,
            "NewConnectedLine": self._on_snapshot,
            "LocalBridge": self._on_local_bridge,
            "DialBegin": self._on_dial_begin,
            "DialState": self._on_dial_state,
            "DialEnd": self._on_dial_end,
            "BridgeEnter": self._on_bridge_enter,
            "BridgeLeave": self._on_bridge_leave,
            "BridgeDestroy": self._on_bridge_destroy,
            "HangupRequest": self._on_hangup_request,
            "Hangup": self._on_hangup,
            "QueueCallerJoin": self._on_queue_join,
            "QueueCallerAbandon": self._on_queue_abandon,
            "AgentCalled": self._on_agent_called,
            "AgentConnect": self._on_agent_connect,
        }

    # ------------------------------------------------------------------ public API

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

    @property
    def now(self) -> float:
        """The tracker's time: the clock if it has one, else the last ``tick()``.

        A live daemon ticks only when ``next_deadline()`` is due, so call times come from the
        clock; replays have none and move only with ``tick()`` (deterministic).
        """
        return self._clock() if self._clock is not None else self._now

    def next_deadline(self) -> float | None:
        """When ``tick()`` next has work: a pending newCall's release or a silent call's expiry.

        None when nothing is due, so an idle daemon sleeps. A call not stamped yet (fed before
        the clock started) is due at once: the tick stamps it.
        """
        delay = self.rules.newcall_delay
        due = min((c.armed_at + delay for c in self._pending.values()), default=None)
        if self.calls:
            limit = self.rules.max_call_duration
            expiry = min(c.last_seen + limit if c.last_seen else 0.0 for c in self.calls.values())
            due = expiry if due is None else min(due, expiry)
        return due

    def tick(self, now: float) -> list[CtiEvent]:
        """Advance the clock: release overdue newCalls, forget calls that went silent too long."""
        self._now = now
        out: list[CtiEvent] = []
        if self._pending:
            due = [
                c for c in self._pending.values() if now - c.armed_at >= self.rules.newcall_delay
            ]
            for call in due:
                self._emit_newcall(call, out)
        limit = self.rules.max_call_duration
        stale = []
        for c in self.calls.values():
            if not c.last_seen:
                c.last_seen = now  # fed before the clock started: count from now
            elif now - c.last_seen > limit:
                stale.append(c)
        for call in stale:
            log.warning("call %s had no event for %.0f s: closing it", call.call_id, limit)
            self._finish(call, out)
        return out

    def flush(self) -> list[CtiEvent]:
        """Release every pending newCall (end of a replay, shutdown)."""
        out: list[CtiEvent] = []
        for call in list(self._pending.values()):
            self._emit_newcall(call, out)
        return out

    def claim(self, event: CtiEvent) -> bool:
        """Record a newCall posted by the FastAGI hook so the AMI side does not post another.

        Returns False when the tracker already emitted this call's newCall (the hook then must
        not post one either).
        """
        cid = str(event.get("callId", ""))
        call = self._linked.get(cid) or self.calls.get(cid)
        if call is not None:
            if call.newcall_state == 2:
                return False
            self._adopt_claim(call, event)
            return True
        self._ghost(event, answered=False)
        return True

    def restore(self, open_calls: Iterable[tuple[CtiEvent, bool]]) -> None:
        """Calls a previous run posted a newCall for and no hangup (from the outbox).

        They wait, without channels, for the first resync: the PBX's listing either shows
        them still up (their channels join them) or not (they get their hangup then).
        """
        for event, answered in open_calls:
            cid = str(event.get("callId", ""))
            if cid and cid not in self.calls:
                self._ghost(event, answered=answered)

    def _ghost(self, event: CtiEvent, *, answered: bool) -> Call:
        """A call known from its posted newCall before (or without) any of its channels."""
        cid = str(event.get("callId", ""))
        call = Call(call_id=cid, last_seen=self.now, born=self._epoch)
        self._adopt_claim(call, event)
        call.answered = answered
        self.calls[cid] = call
        self._linked[cid] = call
        return call

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

        Direction follows the same rules as for AMI events, decided on the channel's endpoint
        first: inside a Gosub or macro the AGI context is the subroutine's, not the route's.
        """
        call = Call(call_id=linkedid)
        ch = Channel(linkedid, channel, call)
        ch.context = context
        self._snapshot(ch, {"CallerIDNum": callerid, "CallerIDName": calleridname})
        if callingpres:
            ch.hidden = _presentation_restricted(callingpres)
        inbound = (
            self._is_trunk_endpoint(ch.endpoint)
            or (not ch.endpoint and self._is_trunk_context(context))
            or (
                ch.endpoint
                and self._is_trunk_context(context)
                and not self._is_internal_ctx(context)
            )
        )
        event: CtiEvent
        if inbound:
            event = {
                "event": "newCall",
                "from": self._numbers.caller(callerid) if not ch.hidden else ANONYMOUS,
                "to": self._numbers.external(to) or to,
                "direction": IN,
                "callId": linkedid,
                "user[]": [],
            }
        else:
            name = self._user_name(ch)
            event = {
                "event": "newCall",
                "from": self._extension(ch) or ANONYMOUS,
                "to": self._numbers.external(to) or to,
                "direction": OUT,
                "callId": linkedid,
                "user[]": [name] if name else [],
            }
        if queue:
            event["queue"] = queue
        if not event["to"] or not self.claim(event):
            return None
        return event

    def mark(self) -> int:
        """A point in the stream (a login); ``resync(..., since=mark)`` spares what came later."""
        self._epoch += 1
        self._seen_at_mark = self.events_seen
        return self._epoch

    def resync(self, channels: Sequence[Event], since: int | None = None) -> list[CtiEvent]:
        """Reconcile with a CoreShowChannels listing taken after a (re)connect.

        Channels we track that Asterisk no longer has ended while we were blind: they are
        hung up here (their calls get a hangup). Channels we do not know began while we were
        blind: they are tracked from now on, as if their Newchannel had arrived. Events keep
        flowing while the listing is built, so a channel first seen after ``since`` (the mark
        taken when the listing was requested) is newer than the listing and stays.
        """
        out: list[CtiEvent] = []
        listed = {ch.get("Uniqueid", ""): ch for ch in channels}
        if since is None:
            since = self.mark()
        gone = [u for u, c in self.channels.items() if u not in listed and c.born < since]
        for uid in gone:
            self.feed_into({"Event": "Hangup", "Uniqueid": uid, "Cause": ""}, out)
        # Roots first (oldest first) so that later channels find their call.
        fresh = [
            ch
            for uid, ch in listed.items()
            if uid and uid not in self.channels and uid not in self._gone
        ]
        fresh.sort(key=lambda ch: (ch.get("Uniqueid") != ch.get("Linkedid"), ch.get("Uniqueid")))
        first_start = self._seen_at_mark == 0
        for ch in fresh:
            ev = dict(ch)
            ev["Event"] = "Newchannel"
            self.feed_into(ev, out)
            if ch.get("ChannelStateDesc") == "Up" or ch.get("ChannelState") == "6":
                self.feed_into({**ev, "Event": "Newstate"}, out)
        adopted = {
            self.channels[u].call
            for u in (c.get("Uniqueid", "") for c in fresh)
            if u in self.channels
        }
        # Rebuild what the listing tells of each adopted call: who its root is dialling (the
        # root's Dial() arguments name the legs) and who shares a bridge.
        for ch in fresh:
            uid = ch.get("Uniqueid", "")
            mine = self.channels.get(uid)
            if mine is None or mine.call not in adopted or mine is mine.call.root:
                continue
            root = mine.call.root
            if root is not None and not mine.is_local and mine.parent is None:
                dial = listed.get(root.uid, {})
                args = dial.get("ApplicationData", "") if dial.get("Application") == "Dial" else ""
                self.feed_into(
                    {
                        "Event": "DialBegin",
                        "Uniqueid": root.uid,
                        "DestUniqueid": uid,
                        "DialString": args.split(",", 1)[0],
                    },
                    out,
                )
        # After a restart the previous run posted the answers of calls that were already up;
        # posting them again would reset Zammad's timing. After a reconnect it did not.
        self._quiet = first_start
        try:
            for ch in fresh:
                if ch.get("BridgeId") and ch.get("Uniqueid", "") in self.channels:
                    self.feed_into(
                        {
                            "Event": "BridgeEnter",
                            "BridgeUniqueid": ch["BridgeId"],
                            "Uniqueid": ch["Uniqueid"],
                        },
                        out,
                    )
        finally:
            self._quiet = False
        # Calls that began while we were blind are posted now, not after newcall_delay.
        for call in adopted:
            if call.newcall_state == 1:
                self._emit_newcall(call, out)
        # Calls known only from their newCall (the hook posted it, or a previous run did) that
        # the PBX no longer lists ended while we were blind.
        for call in [c for c in self.calls.values() if not c.channels and c.born < since]:
            self._finish(call, out)
        return out

    def feed_into(self, event: Event, out: list[CtiEvent]) -> None:
        out.extend(self.feed(event))

    def root_channel(self, call_id: str) -> str | None:
        """The name of a live call's root channel (for an AMI Hangup), if it is still up."""
        call = self.calls.get(call_id)
        if call is None or call.root is None or call.root.uid not in call.channels:
            return None
        return call.root.name

    @property
    def active_calls(self) -> int:
        return len(self.calls)

    # ------------------------------------------------------------------ channel graph

    def _snapshot(self, ch: Channel, ev: Event, prefix: str = "") -> None:
        num = _known(ev.get(prefix + "CallerIDNum"))
        if num:
            ch.cid_num = num
            if not ch.first_num:
                ch.first_num = num
        name = _known(ev.get(prefix + "CallerIDName"))
        if name:
            ch.cid_name = name
        pres = ev.get("CID-CallingPres")
        if pres and not prefix:
            ch.hidden = _presentation_restricted(pres)

    def _call_for(self, uid: str, linkedid: str) -> Call | None:
        call = self._linked.get(linkedid)
        if call is not None:
            return call
        known = self.channels.get(linkedid)
        return known.call if known is not None else None

    def _on_newchannel(self, ev: Event, out: list[CtiEvent]) -> None:
        uid = ev.get("Uniqueid", "")
        linkedid = ev.get("Linkedid", "")
        name = ev.get("Channel", "")
        if not uid or not linkedid or not name or uid in self.channels or uid in self._gone:
            return
        call = self._call_for(uid, linkedid)
        # The root of a call whose newCall the hook posted (or a previous run) arrives now.
        is_root = call is not None and call.root is None and uid == linkedid and not call.channels
        if call is None:
            if len(self.calls) >= self.rules.max_calls:
                self._evict(out)
            call = Call(call_id=linkedid, last_seen=self.now)
            self.calls[linkedid] = call
            self._linked[linkedid] = call
            if uid == linkedid:
                is_root = True
            else:
                call.silent = True  # joined mid-call: we never saw its start
        ch = Channel(uid, name, call)
        ch.born = self._epoch
        ch.context = ev.get("Context", "")
        ch.exten = ev.get("Exten", "")
        self._snapshot(ch, ev)
        ch.is_trunk = not ch.is_local and (
            self._is_trunk_endpoint(ch.endpoint)
            or (
                self._is_trunk_context(ch.context)
                and (is_root or (not self._is_internal_ctx(ch.context) and not ch.first_num))
            )
        )
        self.channels[uid] = ch
        call.channels[uid] = ch
        call.last_seen = self.now
        if ch.is_local:
            base = ch.local_base
            if name.endswith(";1"):
                self._local_wait[base] = ch
            elif name.endswith(";2"):
                one = self._local_wait.pop(base, None)
                if one is not None:
                    self._pair(one, ch)
        if is_root:
            call.root = ch
            self._classify_root(call, ch, out)

    def _pair(self, one: Channel, two: Channel) -> None:
        one.peer, two.peer = two, one
        two.parent = one
        call = one.call
        if call.root is one:
            two.side_a = True  # an originate: the ;2 half rings the A party first
        else:
            two.side_a = one.side_a

    def _on_local_bridge(self, ev: Event, out: list[CtiEvent]) -> None:
        one = self.channels.get(ev.get("LocalOneUniqueid", ""))
        two = self.channels.get(ev.get("LocalTwoUniqueid", ""))
        if one is not None and two is not None and one.peer is None:
            self._local_wait.pop(one.local_base, None)
            self._pair(one, two)

    def _on_snapshot(self, ev: Event, out: list[CtiEvent]) -> None:
        ch = self.channels.get(ev.get("Uniqueid", ""))
        if ch is None:
            return
        self._snapshot(ch, ev)

    # ------------------------------------------------------------------ direction, newCall

    def _classify_root(self, call: Call, root: Channel, out: list[CtiEvent]) -> None:
        if call.newcall_state == 2:
            # Already posted: keep what Zammad has, only learn who the caller is.
            if not root.is_local:
                call.caller = root
            return
        if root.is_trunk:
            call.direction = IN
            call.caller = root
            call.to = self._numbers.external(root.exten) or root.exten
            self._arm(call)
        elif root.is_local:
            call.direction = None  # an originate: decided when the B side is dialled
        else:
            call.caller = root

    def _adopt_claim(self, call: Call, event: CtiEvent) -> None:
        call.external = True
        call.newcall_state = 2
        self._pending.pop(call.call_id, None)
        direction = str(event.get("direction", call.direction or IN))
        call.direction = direction
        call.from_ = str(event.get("from", call.from_))
        call.to = str(event.get("to", call.to))
        users = event.get("user[]")
        if isinstance(users, list):
            call.users = list(users)
        queue = event.get("queue")
        if isinstance(queue, str) and queue:
            call.queue = queue

    def _arm(self, call: Call) -> None:
        if call.newcall_state == 0 and not call.silent:
            call.newcall_state = 1
            call.armed_at = self.now
            self._pending[call.call_id] = call

    def _release_on(self, ev: Event, out: list[CtiEvent]) -> None:
        name = ev.get("Event", "")
        if name in _SETUP_EVENTS:
            return
        ch = self.channels.get(ev.get("Uniqueid", ""))
        if ch is None:
            return
        call = ch.call
        if call.newcall_state != 1:
            return
        if name == "Newstate" and ch is call.root:
            return  # a queue or IVR answering the caller is still set-up
        if not call.fanout and name not in ("Hangup", "HangupRequest", "BridgeEnter"):
            return
        self._emit_newcall(call, out)

    def _base(self, call: Call, event: str) -> CtiEvent:
        return {
            "event": event,
            "from": call.from_,
            "to": call.to,
            "direction": IN if call.direction == INTERNAL else (call.direction or IN),
            "callId": call.call_id,
        }

    def _emit_newcall(self, call: Call, out: list[CtiEvent]) -> None:
        self._pending.pop(call.call_id, None)
        if call.newcall_state == 2 or call.silent:
            return
        if call.direction == INTERNAL and not self.rules.report_internal:
            call.newcall_state = 0
            return
        if call.direction is None:
            return
        if call.direction == IN and call.caller is not None and not call.from_:
            call.from_ = self._caller_number(call.caller)
        call.newcall_state = 2
        ev = self._base(call, "newCall")
        ev["user[]"] = list(call.users)
        if call.queue:
            ev["queue"] = call.queue
        out.append(ev)

    def _caller_number(self, ch: Channel) -> str:
        if ch.hidden:
            return ANONYMOUS
        if ch.is_trunk:
            return self._numbers.caller(ch.cid_num)
        return self._extension(ch) or ANONYMOUS

    def _extension(self, ch: Channel) -> str:
        """A phone's number as Zammad should see it.

        A number or endpoint known in [users] wins over a caller id the dialplan rewrote (FreePBX
        puts the trunk's caller id on the phone's channel before the trunk Dial); otherwise the
        caller id number, then the endpoint name.
        """
        users = self.rules.users
        for candidate in (ch.first_num, ch.cid_num, ch.endpoint):
            if candidate and candidate in users:
                return candidate
        return NumberPlan.digits(ch.cid_num) or ch.endpoint

    def _user_name(self, ch: Channel) -> str:
        users = self.rules.users
        for key in (ch.first_num, ch.cid_num, ch.endpoint):
            if key and key in users:
                return users[key]
        return ch.cid_name

    def _add_user(self, call: Call, ch: Channel) -> None:
        if ch.is_trunk:
            return
        name = self._user_name(ch)
        if name and name not in call.users and call.newcall_state != 2:
            call.users.append(name)

    # ------------------------------------------------------------------ dialling

    def _on_dial_begin(self, ev: Event, out: list[CtiEvent]) -> None:
        dest = self.channels.get(ev.get("DestUniqueid", ""))
        if dest is None:
            return
        src = self.channels.get(ev.get("Uniqueid", ""))
        self._snapshot(dest, ev, "Dest")
        if src is not None:
            self._snapshot(src, ev)
        call = dest.call
        call.last_seen = self.now
        if dest is call.root:
            return  # an originate dialling its own first Local half
        if src is not None and dest.parent is None:
            dest.parent = src
            dest.side_a = src.side_a or (src is call.root.peer if call.root else False)
            if dest.peer is not None:
                dest.peer.side_a = dest.side_a
        if dest.is_local or call.silent:
            if not call.fanout and call.direction == IN:
                call.fanout = True
            return
        dest.dialled = dialled_number(ev.get("DialString", ""))
        call.legs.append(dest)
        if call.root is not None and call.root.is_local:
            self._originate_leg(call, dest, out)
        elif call.direction is None:
            self._phone_leg(call, dest, out)
        if call.direction in (IN, INTERNAL):
            self._add_user(call, dest)
            call.fanout = True

    def _phone_leg(self, call: Call, dest: Channel, out: list[CtiEvent]) -> None:
        """A phone's call: its first real leg decides between out and internal."""
        caller = call.caller
        if caller is None:
            return
        if dest.is_trunk:
            call.direction = OUT
            call.from_ = self._extension(caller)
            call.to = self._numbers.external(dest.dialled) or self._numbers.external(caller.exten)
            name = self._user_name(caller)
            call.users = [name] if name else []
            self._emit_newcall(call, out)
        else:
            call.direction = INTERNAL
            call.from_ = self._extension(caller)
            call.to = NumberPlan.digits(caller.exten) or caller.exten
            self._arm(call)

    def _originate_leg(self, call: Call, dest: Channel, out: list[CtiEvent]) -> None:
        """A Local root (click-to-dial, call-me-now): A side first, then the B side."""
        if dest.side_a:
            if call.caller is None:
                call.caller = dest
            return
        if call.direction is not None or call.caller is None:
            return
        a = call.caller
        if a.is_trunk:
            call.from_ = self._numbers.caller(a.dialled or a.cid_num)
        else:
            call.from_ = self._extension(a)
        if dest.is_trunk:
            call.direction = OUT
            call.to = self._numbers.external(dest.dialled)
            name = "" if a.is_trunk else self._user_name(a)
            call.users = [name] if name else []
            self._emit_newcall(call, out)
        elif a.is_trunk:
            call.direction = IN
            call.to = self._extension(dest)
            self._arm(call)
        else:
            call.direction = INTERNAL
            call.to = self._extension(dest)
            name = self._user_name(a)
            call.users = [name] if name else []
            call.fanout = True
            self._arm(call)

    def _on_dial_state(self, ev: Event, out: list[CtiEvent]) -> None:
        if ev.get("Forward"):
            dest = self.channels.get(ev.get("DestUniqueid", ""))
            if dest is not None:
                dest.call.forwarded = True

    def _on_dial_end(self, ev: Event, out: list[CtiEvent]) -> None:
        dest = self.channels.get(ev.get("DestUniqueid", ""))
        if dest is None:
            return
        status = ev.get("DialStatus", "")
        call = dest.call
        call.last_seen = self.now
        if ev.get("Forward"):
            call.forwarded = True
        if not dest.dial_status or status == "ANSWER":
            dest.dial_status = status
        src = self.channels.get(ev.get("Uniqueid", ""))
        if src is None or src is not call.caller:
            return
        if status == "ANSWER" and not dest.is_local:
            self._answered(call, dest, out)
        elif status == "CANCEL" and not any(leg.dial_status == "ANSWER" for leg in call.legs):
            # The caller's own Dial was cancelled with no leg answering: the caller gave up.
            if ev.get("Forward"):
                call.forwarded = True
            elif not call.answered:
                call.caller_cancelled = True

    # ------------------------------------------------------------------ answering

    def _on_bridge_enter(self, ev: Event, out: list[CtiEvent]) -> None:
        bid = ev.get("BridgeUniqueid", "")
        ch = self.channels.get(ev.get("Uniqueid", ""))
        if not bid or ch is None:
            return
        swap = ev.get("SwapUniqueid")
        members = self._bridges.setdefault(bid, set())
        if swap:
            members.discard(swap)
        if ch.bridge and ch.bridge != bid:
            self._leave(ch)
        members.add(ch.uid)
        ch.bridge = bid
        self._check_answer(ch.call, out)
        # A transfer can bridge a device of another call with this one's caller.
        for uid in members:
            other = self.channels.get(uid)
            if other is not None and other.call is not ch.call:
                self._check_answer(other.call, out)

    def _leave(self, ch: Channel) -> None:
        if ch.bridge is None:
            return
        members = self._bridges.get(ch.bridge)
        if members is not None:
            members.discard(ch.uid)
            if not members:
                del self._bridges[ch.bridge]
        ch.bridge = None

    def _on_bridge_leave(self, ev: Event, out: list[CtiEvent]) -> None:
        ch = self.channels.get(ev.get("Uniqueid", ""))
        if ch is not None and ch.bridge == ev.get("BridgeUniqueid"):
            self._leave(ch)

    def _on_bridge_destroy(self, ev: Event, out: list[CtiEvent]) -> None:
        members = self._bridges.pop(ev.get("BridgeUniqueid", ""), None)
        for uid in members or ():
            ch = self.channels.get(uid)
            if ch is not None:
                ch.bridge = None

    def _devices_of(self, start: Channel) -> list[Channel]:
        """Real devices bridged with ``start``, following Local halves (bounded walk)."""
        found: list[Channel] = []
        seen = {start.uid}
        todo = [start]
        steps = 0
        while todo and steps < 64:
            steps += 1
            ch = todo.pop()
            if ch.bridge is None:
                continue
            for uid in self._bridges.get(ch.bridge, ()):
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

    def _check_answer(self, call: Call, out: list[CtiEvent]) -> None:
        party = call.root if call.root is not None and call.root.is_local else call.caller
        if party is None or call.silent:
            return
        devices = self._devices_of(party)
        if not devices:
            return
        if call.answered_by is not None and any(d is call.answered_by for d in devices):
            return
        device = next((d for d in devices if d is not call.caller), None)
        if device is not None:
            self._answered(call, device, out)

    def _answered(self, call: Call, device: Channel, out: list[CtiEvent]) -> None:
        if call.answered_by is device or device is call.caller:
            return
        call.answered = True
        call.answered_by = device
        if device.uid in call.answered_uids:
            return
        call.answered_uids.add(device.uid)
        if call.newcall_state == 1:
            self._emit_newcall(call, out)
        if call.newcall_state != 2 or self._quiet:
            return
        ev = self._base(call, "answer")
        if device.is_trunk:
            number = self._numbers.external(device.dialled or device.cid_num)
            if number:
                ev["answeringNumber"] = number
        else:
            name = self._user_name(device)
            if name:
                ev["user"] = name
            ext = self._extension(device)
            if ext:
                ev["answeringNumber"] = ext
        out.append(ev)

    def _on_agent_connect(self, ev: Event, out: list[CtiEvent]) -> None:
        dest = self.channels.get(ev.get("DestUniqueid", ""))
        if dest is None or dest.is_local:
            return
        call = dest.call
        if call.answered_by is None:
            self._answered(call, dest, out)

    # ------------------------------------------------------------------ queues

    def _on_queue_join(self, ev: Event, out: list[CtiEvent]) -> None:
        ch = self.channels.get(ev.get("Uniqueid", ""))
        if ch is not None and ev.get("Queue") and not ch.call.queue:
            ch.call.queue = ev.get("Queue", "")

    def _on_agent_called(self, ev: Event, out: list[CtiEvent]) -> None:
        ch = self.channels.get(ev.get("Uniqueid", ""))
        if ch is None:
            return
        call = ch.call
        if ev.get("Queue") and not call.queue:
            call.queue = ev.get("Queue", "")
        if call.direction == IN:
            call.fanout = True

    def _on_queue_abandon(self, ev: Event, out: list[CtiEvent]) -> None:
        ch = self.channels.get(ev.get("Uniqueid", ""))
        if ch is not None:
            if ev.get("Queue") and not ch.call.queue:
                ch.call.queue = ev.get("Queue", "")
            if not ch.call.answered:
                ch.call.caller_cancelled = True

    # ------------------------------------------------------------------ hanging up

    def _on_hangup_request(self, ev: Event, out: list[CtiEvent]) -> None:
        ch = self.channels.get(ev.get("Uniqueid", ""))
        if ch is None:
            return
        call = ch.call
        if (
            ch is call.caller
            and not call.answered
            and not any(leg.dial_status and leg.dial_status not in ("ANSWER",) for leg in call.legs)
        ):
            call.caller_cancelled = True

    def _on_hangup(self, ev: Event, out: list[CtiEvent]) -> None:
        uid = ev.get("Uniqueid", "")
        ch = self.channels.pop(uid, None)
        if ch is None:
            return
        self._gone[uid] = None
        if len(self._gone) > GONE_MEMORY:
            self._gone.popitem(last=False)
        call = ch.call
        call.last_seen = self.now
        cause = _cause(ev.get("Cause"))
        ch.hangup_cause = cause
        if cause == _FORWARDED and not call.answered:
            call.forwarded = True
        self._leave(ch)
        if ch.is_local:
            base = ch.local_base
            if self._local_wait.get(base) is ch:
                del self._local_wait[base]
        call.channels.pop(uid, None)
        if not call.channels:
            self._finish(call, out)

    def _finish(self, call: Call, out: list[CtiEvent]) -> None:
        if call.newcall_state == 1:
            self._emit_newcall(call, out)
        self._pending.pop(call.call_id, None)
        if call.newcall_state == 2 and not call.silent:
            ev = self._base(call, "hangup")
            ev["cause"] = self._hangup_cause(call)
            out.append(ev)
        self._forget(call)

    def _forget(self, call: Call) -> None:
        for uid, ch in call.channels.items():
            self.channels.pop(uid, None)
            self._leave(ch)
            if ch.is_local and self._local_wait.get(ch.local_base) is ch:
                del self._local_wait[ch.local_base]
        call.channels.clear()
        self.calls.pop(call.call_id, None)
        for key in [k for k, c in self._linked.items() if c is call]:
            del self._linked[key]
        call.legs.clear()

    def _evict(self, out: list[CtiEvent]) -> None:
        oldest = min(self.calls.values(), key=lambda c: c.last_seen)
        log.warning("tracking %d calls: closing the oldest, %s", len(self.calls), oldest.call_id)
        self._finish(oldest, out)

    def _hangup_cause(self, call: Call) -> str:
        """The cause table of asterisk-ami.md section 3, evaluated in order."""
        if call.answered:
            return "normalClearing"
        if call.forwarded:
            return "forwarded"
        if call.caller_cancelled:
            return "cancel"
        outcomes = [self._leg_outcome(leg) for leg in call.legs]
        outcomes = [o for o in outcomes if o]
        if not outcomes:
            # Nothing was dialled: the caller's own end tells, e.g. a reject by the FastAGI
            # hook (Hangup(17)) is busy; an IVR or voicemail that released the caller is not.
            caller = call.caller or call.root
            q850 = caller.hangup_cause if caller is not None else None
            if q850 == _BUSY:
                return "busy"
            if q850 in _NOT_FOUND:
                return "notFound"
            if q850 in _CONGESTION and q850 != 127:
                return "congestion"
            return "noAnswer"
        for outcome in ("noAnswerTimeout", "busy", "noAnswer", "notFound", "congestion"):
            if outcome in outcomes:
                return "noAnswer" if outcome == "noAnswerTimeout" else outcome
        return "noAnswer"

    @staticmethod
    def _leg_outcome(leg: Channel) -> str:
        cause = leg.hangup_cause
        status = leg.dial_status
        if status == "CANCEL" and cause == _ANSWERED_ELSEWHERE:
            return ""
        if cause == _BUSY or status == "BUSY":
            return "busy"
        if cause in _NOT_FOUND:
            return "notFound"
        if cause in _CONGESTION or status == "CONGESTION":
            return "congestion"
        if status == "NOANSWER" and cause in (0, 16, None):
            return "noAnswerTimeout"
        if status == "CHANUNAVAIL":
            return "congestion"
        if cause in _NO_ANSWER or status == "NOANSWER":
            return "noAnswer"
        return ""

"""The call model's state: channels, calls, and the enums for where a call stands.

A call is everything that shares the Linkedid of its first (root) channel; its ``callId`` is
that Linkedid (docs/asterisk-ami.md#1-channels-and-calls). These are plain state holders: the
logic that changes them lives in the parts that own each concern (``graph``, ``direction``,
``newcall``, ``answer``, ``hangup``, ``resync``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from cti_bridge.events import CtiEvent

Event = Mapping[str, str]

_CHANNEL_NAME = re.compile(r"^([^/]+)/(.+?)(?:-[0-9a-fA-F]+)?(;[12])?$")


class Direction(StrEnum):
    """Who placed the call, as decided on its root (docs/asterisk-ami.md#9-direction).

    The values are what Zammad receives, except ``INTERNAL``, which is posted as ``in``
    (Zammad knows only ``in`` and ``out``, docs/zammad-cti.md#3-fields-per-event).
    """

    IN = "in"
    OUT = "out"
    INTERNAL = "internal"


class NewCallState(Enum):
    """Where a call's ``newCall`` stands.

    PENDING holds it until the phones ring so that ``user[]`` names who rings; SENT means
    Zammad has it (posted here, by the FastAGI hook, or by a previous run), so every later
    event of the call is an ``answer`` or ``hangup`` to that row.
    """

    NONE = "none"
    PENDING = "pending"
    SENT = "sent"


#: The direction field as posted: internal calls go out as ``in``.
POSTED_DIRECTION: dict[Direction | None, str] = {
    Direction.IN: "in",
    Direction.OUT: "out",
    Direction.INTERNAL: "in",
    None: "in",
}


class Channel:
    """One Asterisk channel, as far as the call model needs it.

    ``__slots__``: a busy PBX has thousands of live channels and every AMI event touches one.
    """

    __slots__ = (
        "born",
        "bridge",
        "call",
        "callerid_name",
        "callerid_num",
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
        self.born = 0  # resync epoch at creation (see CallTracker.mark)
        self.is_local = name.startswith("Local/")
        m = _CHANNEL_NAME.match(name)
        self.endpoint = m.group(2) if m and not self.is_local else ""
        self.is_trunk = False
        self.context = ""
        self.exten = ""
        self.callerid_num = ""
        self.callerid_name = ""
        # The caller ID the channel was born with: the dialplan may rewrite callerid_num later.
        self.first_num = ""
        self.hidden = False
        self.parent: Channel | None = None  # who dialled it
        self.peer: Channel | None = None  # the other half of a Local pair
        self.side_a = False  # rings the A party of an originate
        self.bridge: str | None = None
        self.dial_status = ""
        self.dialled = ""
        self.hangup_cause: int | None = None

    @property
    def local_base(self) -> str:
        """``Local/100@ctx-0001;2`` -> ``Local/100@ctx-0001``: what both halves share."""
        return self.name[:-2] if self.is_local and self.name[-2:] in (";1", ";2") else ""


@dataclass(eq=False)
class Call:
    """A call: a tree of channels under one root, and what happened to it so far."""

    call_id: str
    root: Channel | None = None
    channels: dict[str, Channel] = field(default_factory=dict)
    direction: Direction | None = None  # None: an originate whose B side is not dialled yet
    # The party that places the call: the root, or for an originate the A-side device.
    caller: Channel | None = None
    from_: str = ""
    to: str = ""
    users: list[str] = field(default_factory=list)
    queue: str = ""
    newcall_state: NewCallState = NewCallState.NONE
    armed_at: float = 0.0
    fanout: bool = False  # the phones ring: a pending newCall can name them now
    # Its newCall was posted outside the AMI path: by the FastAGI hook, or by the run before a
    # restart (a ghost restored from the outbox).
    claimed: bool = False
    answered: bool = False
    answered_by: Channel | None = None
    answered_uids: set[str] = field(default_factory=set)
    caller_cancelled: bool = False
    forwarded: bool = False
    legs: list[Channel] = field(default_factory=list)  # the non-Local channels it dialled
    last_seen: float = 0.0
    silent: bool = False  # attached mid-call: never posted
    born: int = 0  # resync epoch at creation (see CallTracker.mark)


def base_event(call: Call, event: str) -> CtiEvent:
    """The fields every CTI event of a call carries (docs/zammad-cti.md#3-fields-per-event)."""
    return {
        "event": event,
        "from": call.from_,
        "to": call.to,
        "direction": POSTED_DIRECTION[call.direction],
        "callId": call.call_id,
    }


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


def presentation_restricted(value: str) -> bool:
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


def update_caller_id(ch: Channel, ev: Event, prefix: str = "") -> None:
    """Take a channel's caller ID from an event's snapshot (``Dest`` prefix: the dialled side).

    docs/asterisk-ami.md#2-frames-and-channel-snapshots: every channel event repeats the
    snapshot, so any of them may carry a newer caller ID.
    """
    num = _known(ev.get(prefix + "CallerIDNum"))
    if num:
        ch.callerid_num = num
        if not ch.first_num:
            ch.first_num = num
    name = _known(ev.get(prefix + "CallerIDName"))
    if name:
        ch.callerid_name = name
    pres = ev.get("CID-CallingPres")
    if pres and not prefix:
        ch.hidden = presentation_restricted(pres)

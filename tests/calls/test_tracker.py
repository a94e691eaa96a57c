"""The tracker on small hand-written streams: the messy cases a live AMI connection produces."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

import pytest

from cti_bridge.calls.tracker import CallRules, CallTracker
from cti_bridge.config import NumbersConfig
from cti_bridge.events import CtiEvent

Ev = dict[str, str]

RULES = CallRules(
    trunk_endpoints=("carrier",),
    trunk_contexts=("from-trunk",),
    internal_contexts=("from-internal",),
    users={"101": "Alice Agent", "102": "Bob Builder"},
)
DID = "4930555100"
CALLER = "491710000001"

# ------------------------------------------------------------------ event builders (AMI v2)


def newchannel(
    uid: str, name: str, *, linked: str | None = None, context: str = "", exten: str = "", **kw: str
) -> Ev:
    return {
        "Event": "Newchannel",
        "Channel": name,
        "Uniqueid": uid,
        "Linkedid": linked or uid,
        "Context": context,
        "Exten": exten,
        "ChannelState": "4",
        "ChannelStateDesc": "Ring",
        "CallerIDName": "<unknown>",
        **kw,
    }


def trunk_in(uid: str, caller: str = CALLER, did: str = DID, **kw: str) -> Ev:
    seq = uid.replace(".", "")[-8:].rjust(8, "0")
    return newchannel(
        uid, f"PJSIP/carrier-{seq}", context="from-trunk", exten=did, CallerIDNum=caller, **kw
    )


def phone(uid: str, who: str, linked: str, ext: str = "") -> Ev:
    seq = uid.replace(".", "")[-8:].rjust(8, "0")
    return newchannel(
        uid,
        f"PJSIP/{who}-{seq}",
        linked=linked,
        context="from-internal",
        exten=ext,
        CallerIDNum=ext,
    )


def dial_begin(src: str, dest: str, dial: str, dest_num: str = "") -> Ev:
    return {
        "Event": "DialBegin",
        "Uniqueid": src,
        "DestUniqueid": dest,
        "DialString": dial,
        "DestCallerIDNum": dest_num,
    }


def dial_end(src: str, dest: str, status: str) -> Ev:
    return {"Event": "DialEnd", "Uniqueid": src, "DestUniqueid": dest, "DialStatus": status}


def bridge(uid: str, bid: str) -> Ev:
    return {"Event": "BridgeEnter", "Uniqueid": uid, "BridgeUniqueid": bid}


def hangup(uid: str, cause: str = "16") -> Ev:
    return {"Event": "Hangup", "Uniqueid": uid, "Cause": cause}


def newstate(uid: str, state: str = "Up") -> Ev:
    return {"Event": "Newstate", "Uniqueid": uid, "ChannelStateDesc": state}


def inbound_answered(root: str = "1.0", alice: str = "1.1") -> list[Ev]:
    """A trunk call to alice, answered, alice hangs up first."""
    return [
        trunk_in(root),
        phone(alice, "alice", root, "101"),
        dial_begin(root, alice, "PJSIP/alice", "101"),
        newstate(alice),
        dial_end(root, alice, "ANSWER"),
        bridge(alice, "b" + root),
        bridge(root, "b" + root),
        hangup(alice),
        hangup(root),
    ]


def outbound(root: str = "2.0", trunk: str = "2.1", number: str = "0491719990007") -> list[Ev]:
    """Alice dials out through the carrier, answered."""
    seq = trunk.replace(".", "").rjust(8, "0")
    return [
        phone(root, "alice", root, "101") | {"Exten": number},
        newchannel(trunk, f"PJSIP/carrier-{seq}", linked=root, context="from-trunk", exten="s"),
        dial_begin(root, trunk, number[1:] + "@carrier", number),
        dial_end(root, trunk, "ANSWER"),
        bridge(trunk, "b" + root),
        bridge(root, "b" + root),
        hangup(trunk),
        hangup(root),
    ]


def feed(tracker: CallTracker, events: Iterable[Ev]) -> list[CtiEvent]:
    out: list[CtiEvent] = []
    for ev in events:
        out.extend(tracker.feed(ev))
    return out


def replay(events: Iterable[Ev], rules: CallRules = RULES) -> tuple[list[CtiEvent], CallTracker]:
    tracker = CallTracker(rules)
    out = feed(tracker, events)
    out.extend(tracker.flush())
    assert tracker.errors == 0
    return out, tracker


def names(out: list[CtiEvent]) -> list[str]:
    return [str(e["event"]) for e in out]


def assert_empty(tracker: CallTracker) -> None:
    assert tracker.calls == {} and tracker.channels == {}
    assert tracker.active_calls == 0


# ------------------------------------------------------------------ the reference calls


def test_reference_inbound_call() -> None:
    out, tracker = replay(inbound_answered())
    assert names(out) == ["newCall", "answer", "hangup"]
    assert out[0] == {
        "event": "newCall",
        "from": CALLER,
        "to": DID,
        "direction": "in",
        "callId": "1.0",
        "user[]": ["Alice Agent"],
    }
    assert out[1]["user"] == "Alice Agent" and out[1]["answeringNumber"] == "101"
    assert out[2]["cause"] == "normalClearing"
    assert_empty(tracker)


def test_reference_outbound_call() -> None:
    out, tracker = replay(outbound())
    assert names(out) == ["newCall", "answer", "hangup"]
    assert out[0]["direction"] == "out"
    assert (out[0]["from"], out[0]["to"], out[0]["user[]"]) == (
        "101",
        "491719990007",
        ["Alice Agent"],
    )
    assert_empty(tracker)


# ------------------------------------------------------------------ messy streams


@pytest.mark.parametrize(
    "event",
    [
        newstate("9.9"),
        {"Event": "NewCallerid", "Uniqueid": "9.9", "CallerIDNum": "123"},
        {"Event": "NewConnectedLine", "Uniqueid": "9.9"},
        dial_begin("9.9", "9.8", "PJSIP/alice"),
        {"Event": "DialState", "Uniqueid": "9.9", "DestUniqueid": "9.8", "Forward": "x"},
        dial_end("9.9", "9.8", "ANSWER"),
        bridge("9.9", "b9"),
        {"Event": "BridgeLeave", "Uniqueid": "9.9", "BridgeUniqueid": "b9"},
        {"Event": "BridgeDestroy", "BridgeUniqueid": "b9"},
        {"Event": "HangupRequest", "Uniqueid": "9.9"},
        hangup("9.9"),
        {"Event": "LocalBridge", "LocalOneUniqueid": "9.9", "LocalTwoUniqueid": "9.8"},
        {"Event": "QueueCallerJoin", "Uniqueid": "9.9", "Queue": "q"},
        {"Event": "QueueCallerAbandon", "Uniqueid": "9.9", "Queue": "q"},
        {"Event": "AgentCalled", "Uniqueid": "9.9", "DestUniqueid": "9.8"},
        {"Event": "AgentConnect", "Uniqueid": "9.9", "DestUniqueid": "9.8"},
    ],
    ids=lambda e: e["Event"],
)
def test_events_for_unseen_channels_are_ignored(event: Ev) -> None:
    tracker = CallTracker(RULES)
    # Also while another call is live (its pending newCall must stay pending).
    assert tracker.feed(trunk_in("1.0")) == []
    assert tracker.feed(event) == []
    assert tracker.errors == 0
    assert list(tracker.calls) == ["1.0"] and list(tracker.channels) == ["1.0"]


def test_newstate_before_dialbegin() -> None:
    # Asterisk may report the callee ringing before the Dial's DialBegin reaches us.
    events = inbound_answered()
    events[2], events[3] = events[3], events[2]
    events.insert(2, newstate("1.1", "Ringing"))
    out, tracker = replay(events)
    assert names(out) == ["newCall", "answer", "hangup"]
    assert out[0]["user[]"] == ["Alice Agent"]
    assert_empty(tracker)


def test_duplicate_dialend_gives_one_answer() -> None:
    events = inbound_answered()
    events.insert(5, dial_end("1.0", "1.1", "ANSWER"))
    events.insert(5, dial_end("1.0", "1.1", "ANSWER"))
    out, tracker = replay(events)
    assert names(out) == ["newCall", "answer", "hangup"]
    assert_empty(tracker)


def test_duplicate_dialend_failure_keeps_the_first_status() -> None:
    # A repeated DialEnd with another status must not rewrite the leg's outcome: BUSY stays
    # busy (the leg's cause 16 alone would read as a Dial timeout, noAnswer).
    root, bob = "1.0", "1.2"
    events = [
        trunk_in(root),
        phone(bob, "bob", root, "102"),
        dial_begin(root, bob, "PJSIP/bob"),
        dial_end(root, bob, "BUSY"),
        dial_end(root, bob, "NOANSWER"),
        dial_end(root, bob, "BUSY"),
        hangup(bob, "16"),
        hangup(root, "16"),
    ]
    out, tracker = replay(events)
    assert names(out) == ["newCall", "hangup"]
    assert out[0]["user[]"] == ["Bob Builder"]
    assert out[1]["cause"] == "busy"
    assert_empty(tracker)


def test_busy_and_timeout_legs_give_no_answer() -> None:
    # app_dial reports BUSY only when every leg failed; a leg that rang out means no answer
    # (asterisk-ami.md section 3).
    root, alice, bob = "1.0", "1.1", "1.2"
    events = [
        trunk_in(root),
        phone(alice, "alice", root, "101"),
        phone(bob, "bob", root, "102"),
        dial_begin(root, alice, "PJSIP/alice"),
        dial_begin(root, bob, "PJSIP/bob"),
        dial_end(root, bob, "BUSY"),
        hangup(bob, "17"),
        dial_end(root, alice, "NOANSWER"),
        hangup(alice, "16"),
        hangup(root, "16"),
    ]
    out, _ = replay(events)
    assert out[0]["user[]"] == ["Alice Agent", "Bob Builder"]
    assert [(e["event"], e.get("cause")) for e in out] == [
        ("newCall", None),
        ("hangup", "noAnswer"),
    ]


def test_ami_v1_noise_is_ignored() -> None:
    # Asterisk 11 (AMI 1.x) names: Dial/SubEvent, Bridge, Newchannel without Linkedid.
    v1 = [
        {"Event": "Newchannel", "Channel": "SIP/carrier-00000001", "Uniqueid": "1.0",
         "Context": "from-trunk", "Exten": DID, "CallerIDNum": CALLER},
        {"Event": "Dial", "SubEvent": "Begin", "Channel": "SIP/carrier-00000001",
         "Destination": "SIP/alice-00000002", "UniqueID": "1.0", "DestUniqueID": "1.1"},
        {"Event": "Bridge", "Bridgestate": "Link", "Uniqueid1": "1.0", "Uniqueid2": "1.1"},
        {"Event": "Dial", "SubEvent": "End", "Channel": "SIP/carrier-00000001",
         "DialStatus": "ANSWER"},
        {"Event": "Unlink", "Uniqueid1": "1.0", "Uniqueid2": "1.1"},
        {"Event": "Hangup", "Uniqueid": "1.0", "Cause": "16"},
    ]  # fmt: skip
    out, tracker = replay(v1)
    assert out == []
    assert_empty(tracker)


def test_unknown_events_are_not_counted() -> None:
    tracker = CallTracker(RULES)
    for name in ("VarSet", "TestEvent", "FullyBooted", "Cdr", "SomethingNew", ""):
        assert tracker.feed({"Event": name, "Uniqueid": "1.0"}) == []
    assert tracker.feed({}) == []
    assert tracker.events_seen == 0 and tracker.errors == 0
    assert_empty(tracker)


HANDLED = [
    "Newchannel", "Newstate", "NewCallerid", "NewConnectedLine", "LocalBridge", "DialBegin",
    "DialState", "DialEnd", "BridgeEnter", "BridgeLeave", "BridgeDestroy", "HangupRequest",
    "Hangup", "QueueCallerJoin", "QueueCallerAbandon", "AgentCalled", "AgentConnect",
]  # fmt: skip
ALL_KEYS = [
    "Channel", "Uniqueid", "Linkedid", "DestUniqueid", "DestChannel", "Context", "Exten",
    "CallerIDNum", "CallerIDName", "DestCallerIDNum", "DestCallerIDName", "CID-CallingPres",
    "DialString", "DialStatus", "Forward", "BridgeUniqueid", "SwapUniqueid", "Cause", "Queue",
    "LocalOneUniqueid", "LocalTwoUniqueid", "ChannelState", "ChannelStateDesc",
]  # fmt: skip


@pytest.mark.parametrize("name", HANDLED)
def test_missing_and_empty_values_do_not_break_a_live_call(name: str) -> None:
    tracker = CallTracker(RULES)
    events = inbound_answered()
    out = feed(tracker, events[:3])
    for odd in (
        {"Event": name},
        {"Event": name, **dict.fromkeys(ALL_KEYS, "")},
        # Ids of the live call but every other field empty or odd.
        {"Event": name, **dict.fromkeys(ALL_KEYS, ""), "Uniqueid": "1.0", "DestUniqueid": "1.1"},
        {"Event": name, **dict.fromkeys(ALL_KEYS, " "), "Uniqueid": "1.1", "Cause": "sixteen"},
        {"Event": name, **dict.fromkeys(ALL_KEYS, "<unknown>"), "Uniqueid": "1.1"},
    ):
        out += tracker.feed(odd)
    out += feed(tracker, events[3:])
    out += tracker.flush()
    assert tracker.errors == 0
    assert names(out)[0] == "newCall" and names(out)[-1] == "hangup"
    assert all(e["from"] and e["to"] and e["callId"] == "1.0" for e in out)
    assert_empty(tracker)


def test_hangup_storm() -> None:
    """Many live calls end at once (a trunk drops), with repeated and stray Hangups."""
    tracker = CallTracker(RULES)
    n = 200
    out: list[CtiEvent] = []
    for i in range(n):
        out += feed(tracker, inbound_answered(f"{i}.0", f"{i}.1")[:7])
    assert names(out).count("answer") == n and len(tracker.calls) == n
    storm = [hangup(f"{i}.{leg}", "38") for i in range(n) for leg in (0, 1)]
    storm += [hangup(f"{i}.0") for i in range(n)] + [hangup(f"x{i}") for i in range(n)]
    ends = feed(tracker, storm)
    assert names(ends) == ["hangup"] * n
    assert {e["callId"] for e in ends} == {f"{i}.0" for i in range(n)}
    assert all(e["cause"] == "normalClearing" for e in ends)
    assert tracker.errors == 0
    assert_empty(tracker)
    assert set(tracker.residue().values()) == {0}, tracker.residue()


# ------------------------------------------------------------------ the clock


def test_tick_releases_a_pending_inbound_newcall() -> None:
    # An IVR that never dials: nothing else would release the newCall until the caller leaves.
    tracker = CallTracker(RULES)
    assert tracker.tick(100.0) == []
    assert tracker.feed(trunk_in("1.0")) == []
    assert tracker.tick(100.0 + RULES.newcall_delay / 2) == []
    out = tracker.tick(100.0 + RULES.newcall_delay)
    assert names(out) == ["newCall"] and out[0]["user[]"] == []
    assert tracker.tick(200.0) == []  # only once
    assert names(tracker.feed(hangup("1.0"))) == ["hangup"]
    assert_empty(tracker)


def test_tick_closes_a_silent_call() -> None:
    rules = replace(RULES, max_call_duration=60.0)
    tracker = CallTracker(rules)
    tracker.tick(1000.0)
    out = feed(tracker, inbound_answered()[:7])
    assert names(out) == ["newCall", "answer"]
    assert tracker.tick(1060.0) == []  # exactly at the limit: still alive
    out = tracker.tick(1061.0)
    assert names(out) == ["hangup"] and out[0]["callId"] == "1.0"
    assert out[0]["cause"] == "normalClearing"
    assert_empty(tracker)
    # The Hangups that arrive after all are harmless.
    assert feed(tracker, [hangup("1.1"), hangup("1.0")]) == []
    assert tracker.errors == 0


def test_tick_keeps_a_call_that_still_has_events() -> None:
    rules = replace(RULES, max_call_duration=60.0)
    tracker = CallTracker(rules)
    tracker.tick(1000.0)
    feed(tracker, inbound_answered()[:7])
    tracker.tick(1050.0)
    tracker.feed(dial_end("1.0", "1.1", "ANSWER"))  # any event of the call refreshes it
    assert tracker.tick(1100.0) == []
    assert list(tracker.calls) == ["1.0"]


def test_max_calls_evicts_the_oldest() -> None:
    rules = replace(RULES, max_calls=2)
    tracker = CallTracker(rules)
    out: list[CtiEvent] = []
    for i, t in enumerate((10.0, 20.0)):
        tracker.tick(t)
        out += feed(tracker, inbound_answered(f"{i}.0", f"{i}.1")[:7])
    tracker.tick(30.0)
    # The second call gets an event: the first stays the oldest.
    tracker.feed(newstate("1.1"))
    out = tracker.feed(trunk_in("2.0"))
    assert names(out) == ["hangup"] and out[0]["callId"] == "0.0"
    assert sorted(tracker.calls) == ["1.0", "2.0"]
    assert "0.0" not in tracker.channels and "0.1" not in tracker.channels
    rest = feed(tracker, [hangup("0.1"), hangup("0.0"), hangup("1.1"), hangup("1.0")])
    assert [(e["event"], e["callId"]) for e in rest] == [("hangup", "1.0")]


def test_max_calls_eviction_posts_a_pending_newcall_first() -> None:
    rules = replace(RULES, max_calls=1)
    tracker = CallTracker(rules)
    tracker.feed(trunk_in("1.0"))  # pending: no fan-out yet
    out = tracker.feed(trunk_in("2.0"))
    assert [(e["event"], e["callId"]) for e in out] == [("newCall", "1.0"), ("hangup", "1.0")]
    assert list(tracker.calls) == ["2.0"]


# ------------------------------------------------------------------ resync after a reconnect


def listing(*events: Ev) -> list[Mapping[str, str]]:
    """CoreShowChannel entries: the Newchannel fields of channels still up."""
    return [
        {k: v for k, v in e.items() if k != "Event"} | {"ChannelStateDesc": "Up"} for e in events
    ]


def test_resync_closes_calls_whose_channels_vanished() -> None:
    tracker = CallTracker(RULES)
    feed(tracker, inbound_answered()[:7])
    feed(tracker, outbound()[:6])
    assert sorted(tracker.calls) == ["1.0", "2.0"]
    # Call 1 ended while we were disconnected; call 2 is still up.
    out = tracker.resync(listing(outbound()[0], outbound()[1]))
    assert [(e["event"], e["callId"], e["cause"]) for e in out] == [
        ("hangup", "1.0", "normalClearing")
    ]
    assert list(tracker.calls) == ["2.0"]
    assert names(feed(tracker, outbound()[6:])) == ["hangup"]
    assert tracker.errors == 0
    assert_empty(tracker)


def test_resync_spares_channels_born_after_the_mark() -> None:
    tracker = CallTracker(RULES)
    mark = tracker.mark()
    feed(tracker, inbound_answered()[:3])  # arrived while the listing was being built
    out = tracker.resync([], since=mark)
    assert out == []
    assert sorted(tracker.channels) == ["1.0", "1.1"]


def test_resync_adopts_a_call_that_began_while_blind() -> None:
    tracker = CallTracker(RULES)
    root, alice = trunk_in("5.0"), phone("5.1", "alice", "5.0", "101")
    out = tracker.resync(listing(root, alice))
    assert [(e["event"], e["callId"], e["direction"]) for e in out] == [("newCall", "5.0", "in")]
    assert out[0]["from"] == CALLER and out[0]["to"] == DID
    assert sorted(tracker.channels) == ["5.0", "5.1"]
    # The same listing again changes nothing.
    assert tracker.resync(listing(root, alice)) == []
    out = feed(tracker, [hangup("5.1"), hangup("5.0")])
    assert names(out) == ["hangup"]
    assert_empty(tracker)


def test_resync_does_not_revive_a_call_that_ended_during_the_listing() -> None:
    # The listing is a snapshot taken at the mark; the call's Hangups overtake it.
    tracker = CallTracker(RULES)
    events = inbound_answered()
    out = feed(tracker, events[:7])
    mark = tracker.mark()
    snapshot = listing(events[0], events[1])
    out += feed(tracker, events[7:])
    assert names(out) == ["newCall", "answer", "hangup"]
    assert tracker.resync(snapshot, since=mark) == []
    assert_empty(tracker)


def test_late_duplicate_newchannel_does_not_reopen_a_call() -> None:
    tracker = CallTracker(RULES)
    tracker.tick(100.0)
    events = inbound_answered()
    out = feed(tracker, [*events, events[0]])
    out += tracker.tick(100.0 + RULES.newcall_delay)
    assert names(out) == ["newCall", "answer", "hangup"]
    assert_empty(tracker)


# ------------------------------------------------------------------ FastAGI claims


def test_agi_newcall_claims_an_inbound_call() -> None:
    tracker = CallTracker(RULES)
    events = inbound_answered()
    out = tracker.feed(events[0])  # AGI runs in the dialplan, after the Newchannel
    posted = tracker.agi_newcall(
        channel="PJSIP/carrier-00000010", linkedid="1.0", callerid="+" + CALLER,
        context="from-trunk", to=DID, queue="helpdesk",
    )  # fmt: skip
    assert posted == {
        "event": "newCall",
        "from": CALLER,
        "to": DID,
        "direction": "in",
        "callId": "1.0",
        "user[]": [],
        "queue": "helpdesk",
    }
    out += feed(tracker, events[1:5])
    # A second AGI on the same call (another leg, a retry) must not post again.
    assert tracker.agi_newcall(
        channel="PJSIP/carrier-00000010", linkedid="1.0", callerid=CALLER, context="from-trunk",
        to=DID,
    ) is None  # fmt: skip
    out += feed(tracker, events[5:]) + tracker.flush()
    assert names(out) == ["answer", "hangup"]
    assert all((e["from"], e["to"], e["direction"]) == (CALLER, DID, "in") for e in out)
    assert out[-1]["cause"] == "normalClearing"
    assert_empty(tracker)


def test_claim_before_the_newchannel_is_adopted() -> None:
    tracker = CallTracker(RULES)
    claimed: CtiEvent = {
        "event": "newCall", "from": "4930999", "to": "4930111", "direction": "out",
        "callId": "2.0", "user[]": ["Someone"],
    }  # fmt: skip
    assert tracker.claim(claimed) is True
    out = feed(tracker, outbound()) + tracker.flush()
    assert names(out) == ["answer", "hangup"]
    assert all((e["from"], e["to"], e["direction"]) == ("4930999", "4930111", "out") for e in out)
    assert_empty(tracker)


def test_claim_after_the_tracker_posted_is_refused() -> None:
    tracker = CallTracker(RULES)
    out = feed(tracker, outbound()[:3])
    assert names(out) == ["newCall"]
    assert tracker.claim(out[0] | {"from": "other"}) is False
    rest = feed(tracker, outbound()[3:])
    assert names(rest) == ["answer", "hangup"] and rest[0]["from"] == "101"


def test_agi_newcall_for_a_phone_is_outbound() -> None:
    tracker = CallTracker(RULES)
    tracker.feed(outbound()[0])
    posted = tracker.agi_newcall(
        channel="PJSIP/alice-00000020", linkedid="2.0", callerid="101",
        context="from-internal", to="0491719990007",
    )  # fmt: skip
    assert posted is not None
    assert (posted["direction"], posted["from"], posted["user[]"]) == (
        "out",
        "101",
        ["Alice Agent"],
    )
    out = feed(tracker, outbound()[1:])
    assert names(out) == ["answer", "hangup"]


# ------------------------------------------------------------------ numbers


@pytest.mark.parametrize(
    ("caller", "pres", "region", "want"),
    [
        ("+491710000001", "", None, "491710000001"),
        ("+49 171 000-0001", "", None, "491710000001"),
        ("<unknown>", "", None, "anonymous"),
        ("", "", None, "anonymous"),
        (CALLER, "33 (Presentation Prohibited, Passed Screen)", None, "anonymous"),
        ("030123456", "", "DE", "4930123456"),
        ("0049301234", "", "DE", "49301234"),
        ("+4930123456", "", "DE", "4930123456"),
        ("030123456", "", None, "030123456"),
    ],
)
def test_caller_numbers(caller: str, pres: str, region: str | None, want: str) -> None:
    rules = replace(RULES, numbers=NumbersConfig(region=region))
    first = trunk_in("1.0", caller=caller)
    if pres:
        first["CID-CallingPres"] = pres
    out, _ = replay([first, *inbound_answered()[1:]], rules)
    assert names(out) == ["newCall", "answer", "hangup"]
    assert {e["from"] for e in out} == {want}


def test_dialled_number_with_region() -> None:
    rules = replace(RULES, numbers=NumbersConfig(region="DE"))
    out, _ = replay(outbound(number="0030123456"), rules)
    assert {e["to"] for e in out} == {"4930123456"}


# ------------------------------------------------------------------ internal calls


def internal_call() -> list[Ev]:
    root, bob = "3.0", "3.1"
    return [
        phone(root, "alice", root, "101") | {"Exten": "102"},
        phone(bob, "bob", root, "102"),
        dial_begin(root, bob, "PJSIP/bob", "102"),
        dial_end(root, bob, "ANSWER"),
        bridge(bob, "b3"),
        bridge(root, "b3"),
        hangup(root),
        hangup(bob),
    ]


def test_internal_call_reported_as_inbound() -> None:
    rules = replace(RULES, report_internal=True)
    out, tracker = replay(internal_call(), rules)
    assert names(out) == ["newCall", "answer", "hangup"]
    assert {(e["direction"], e["from"], e["to"]) for e in out} == {("in", "101", "102")}
    assert out[0]["user[]"] == ["Bob Builder"]
    assert_empty(tracker)


def test_internal_call_not_reported() -> None:
    out, tracker = replay(internal_call(), RULES)
    assert out == []
    assert_empty(tracker)


# ---------------------------------------------------------------- calls known only by newCall


def _posted(call_id: str, direction: str = "in") -> dict[str, str | list[str]]:
    return {
        "event": "newCall",
        "from": "491710000099",
        "to": "4930555300",
        "direction": direction,
        "callId": call_id,
        "user[]": [],
    }


def test_restored_open_call_gone_from_the_pbx_gets_its_hangup() -> None:
    tracker = CallTracker(RULES)
    tracker.restore([(_posted("1.1"), True), (_posted("2.2"), False)])
    assert tracker.active_calls == 2
    out = tracker.resync([], since=tracker.mark())
    assert [(e["event"], e["callId"], e["cause"]) for e in out] == [
        ("hangup", "1.1", "normalClearing"),
        ("hangup", "2.2", "noAnswer"),
    ]
    assert all(e["from"] == "491710000099" and e["direction"] == "in" for e in out)
    assert_empty(tracker)


def test_hook_posted_call_that_ended_while_blind_gets_its_hangup() -> None:
    tracker = CallTracker(RULES)
    assert tracker.claim(_posted("3.3"))
    # The AMI link was down for the whole call; the listing after the reconnect is empty.
    out = tracker.resync([], since=tracker.mark())
    assert [(e["event"], e["callId"]) for e in out] == [("hangup", "3.3")]
    assert_empty(tracker)


def test_hook_claim_after_the_mark_is_spared_by_a_stale_listing() -> None:
    tracker = CallTracker(RULES)
    mark = tracker.mark()
    assert tracker.claim(_posted("4.4"))  # the call began after the listing was requested
    assert tracker.resync([], since=mark) == []
    assert tracker.active_calls == 1

"""Voicemail and forwards to an outside number in the call model (issue 13).

Hand-written streams for the shapes the lab does not record, and the lab's traces replayed as
the daemon's AMI user gets them (the shipped eventfilter lines applied to every event).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from cti_bridge.ami.wanted import manager_eventfilters
from cti_bridge.calls.trace import read_trace
from cti_bridge.calls.tracker import CallTracker
from tests.calls.test_lab_traces import EXPECTED, TRACES, by_call, rules
from tests.calls.test_tracker import (
    CALLER,
    DID,
    RULES,
    Ev,
    bridge,
    dial_begin,
    dial_end,
    hangup,
    newchannel,
    newstate,
    phone,
    replay,
    trunk_in,
)
from tests.support.ami_filter import LegacyFilter

VOICEMAIL = {"event": "answer", "user": "voicemail"}


def app(uid: str, application: str, data: str = "", context: str = "from-trunk") -> Ev:
    return {
        "Event": "Newexten",
        "Uniqueid": uid,
        "Context": context,
        "Application": application,
        "AppData": data,
    }


def shape(out: list[dict[str, object]]) -> list[dict[str, object]]:
    """The events without the fields every event repeats."""
    keep = ("event", "user", "answeringNumber", "cause", "user[]")
    return [{k: e[k] for k in keep if k in e} for e in out]


def test_direct_voicemail_is_answered_by_voicemail() -> None:
    out, _ = replay(
        [
            trunk_in("1.0"),
            app("1.0", "AGI", "agi://127.0.0.1/newcall"),
            app("1.0", "VoiceMail", "101@default,u"),
            newstate("1.0"),
            {"Event": "HangupRequest", "Uniqueid": "1.0", "Cause": "16"},
            hangup("1.0"),
        ]
    )
    assert shape(out) == [
        {"event": "newCall", "user[]": []},
        VOICEMAIL,  # no answeringNumber: nobody gets a screen pop
        {"event": "hangup", "cause": "normalClearing"},
    ]
    assert out[1]["from"] == CALLER and out[1]["to"] == DID


def test_freepbx_macro_vm_and_ring_group_timeout() -> None:
    """FreePBX: the phones ring out, then Gosub(macro-vm) runs VoiceMail() on the caller."""
    out, _ = replay(
        [
            trunk_in("1.0"),
            phone("1.1", "alice", "1.0", "101"),
            phone("1.2", "bob", "1.0", "102"),
            dial_begin("1.0", "1.1", "PJSIP/alice"),
            dial_begin("1.0", "1.2", "PJSIP/bob"),
            newstate("1.1", "Ringing"),
            dial_end("1.0", "1.1", "NOANSWER"),
            dial_end("1.0", "1.2", "NOANSWER"),
            hangup("1.1", "0"),
            hangup("1.2", "0"),
            app("1.0", "Gosub", "macro-vm,s,1(101,NOANSWER,)", "ext-local"),
            app("1.0", "Set", "VMCONTEXT=default", "macro-vm"),
            app("1.0", "VoiceMail", "101@default,u", "macro-vm"),
            newstate("1.0"),
            hangup("1.0"),
        ]
    )
    assert shape(out) == [
        {"event": "newCall", "user[]": ["Alice Agent", "Bob Builder"]},
        VOICEMAIL,
        {"event": "hangup", "cause": "normalClearing"},
    ]


@pytest.mark.parametrize("application", ["Answer", "BackGround", "WaitExten", "VoiceMailMain"])
def test_an_ivr_or_a_mailbox_menu_is_no_voicemail(application: str) -> None:
    out, tracker = replay(
        [
            trunk_in("1.0"),
            app("1.0", application),
            newstate("1.0"),
            {"Event": "HangupRequest", "Uniqueid": "1.0", "Cause": "16"},
            hangup("1.0"),
        ]
    )
    assert shape(out) == [
        {"event": "newCall", "user[]": []},
        {"event": "hangup", "cause": "cancel"},
    ]
    assert tracker.errors == 0


def test_voicemail_behind_a_local_channel_answers_when_the_caller_gets_it() -> None:
    """Dial(Local/101@from-internal): the mailbox runs on the Local ;2 half, and the caller
    is answered by voicemail only when its Dial answers that Local channel."""
    local = "Local/101@from-internal-00000001"
    tracker = CallTracker(RULES)
    ringing = tracker.feed_many(
        [
            trunk_in("1.0"),
            newchannel("1.1", f"{local};1", linked="1.0", context="from-internal", exten="101"),
            newchannel("1.2", f"{local};2", linked="1.0", context="from-internal", exten="101"),
            dial_begin("1.0", "1.1", "Local/101@from-internal"),
            app("1.2", "VoiceMail", "101@default,u", "from-internal"),
            newstate("1.2"),
        ]
    )
    assert [e["event"] for e in ringing] == ["newCall"]  # not the caller's answer yet
    answered = tracker.feed_many(
        [
            dial_end("1.0", "1.1", "ANSWER"),
            bridge("1.0", "b1"),
            bridge("1.1", "b1"),
            hangup("1.2"),
            hangup("1.1"),
            hangup("1.0"),
        ]
    )
    assert shape(answered) == [VOICEMAIL, {"event": "hangup", "cause": "normalClearing"}]


def test_a_person_who_answered_stays_the_answer() -> None:
    """An agent transferring the caller to a mailbox: the call was answered by the agent."""
    out, _ = replay(
        [
            trunk_in("1.0"),
            phone("1.1", "alice", "1.0", "101"),
            dial_begin("1.0", "1.1", "PJSIP/alice"),
            dial_end("1.0", "1.1", "ANSWER"),
            hangup("1.1"),
            app("1.0", "VoiceMail", "102@default,u"),
            hangup("1.0"),
        ]
    )
    assert [(e["event"], e.get("user")) for e in out] == [
        ("newCall", None),
        ("answer", "Alice Agent"),
        ("hangup", None),
    ]


def test_internal_call_to_a_mailbox_is_voicemail_with_report_internal() -> None:
    """Alice calls bob, bob does not answer, alice leaves a message: with report_internal
    the internal call (posted as ``in``) is answered by voicemail; without, nothing."""
    events = [
        phone("1.0", "alice", "1.0", "101"),
        phone("1.1", "bob", "1.0", "102"),
        dial_begin("1.0", "1.1", "PJSIP/bob"),
        dial_end("1.0", "1.1", "NOANSWER"),
        hangup("1.1", "0"),
        app("1.0", "VoiceMail", "102@default,u", "from-internal"),
        newstate("1.0"),
        hangup("1.0"),
    ]
    assert replay(events)[0] == []
    out, _ = replay(events, replace(RULES, report_internal=True))
    assert [e["event"] for e in out] == ["newCall", "answer", "hangup"]
    assert out[1]["user"] == "voicemail" and out[2]["cause"] == "normalClearing"


def test_an_outbound_call_never_gets_a_voicemail_answer() -> None:
    """An outbound row is never missed (done from the start): VoiceMail() on the phone's own
    channel (its trunk leg failed) changes nothing."""
    out, _ = replay(
        [
            phone("2.0", "alice", "2.0", "101"),
            newchannel("2.1", "PJSIP/carrier-00000021", linked="2.0", context="from-internal"),
            dial_begin("2.0", "2.1", "PJSIP/0491719990007@carrier"),
            dial_end("2.0", "2.1", "BUSY"),
            hangup("2.1", "17"),
            app("2.0", "VoiceMail", "101@default,b", "from-internal"),
            hangup("2.0"),
        ]
    )
    assert [e["event"] for e in out] == ["newCall", "hangup"]
    assert out[-1]["cause"] == "busy"


# ------------------------------------------------------------------ forwards


def forward(members: list[tuple[str, str, str]], *, claim: bool = False) -> list[dict[str, object]]:
    """An inbound call rings ``members`` (uid, endpoint, ext) and an outside number; the
    outside number answers. ``claim``: the FastAGI hook posted the newCall first."""
    tracker = CallTracker(RULES)
    out = tracker.feed_many([trunk_in("1.0")])
    if claim:
        event = tracker.agi_newcall(
            channel="PJSIP/carrier-00000010",
            linkedid="1.0",
            callerid=CALLER,
            context="from-trunk",
            to=DID,
        )
        assert event is not None
    events: list[Ev] = []
    for uid, who, ext in members:
        events += [phone(uid, who, "1.0", ext), dial_begin("1.0", uid, f"PJSIP/{who}")]
    mobile = newchannel("1.9", "PJSIP/carrier-00000019", linked="1.0", context="from-trunk")
    events += [
        mobile,
        dial_begin("1.0", "1.9", "PJSIP/491719990100@carrier"),
        dial_end("1.0", "1.9", "ANSWER"),
    ]
    events += [dial_end("1.0", uid, "CANCEL") for uid, _, _ in members]
    events += [hangup(uid, "26") for uid, _, _ in members] + [hangup("1.9"), hangup("1.0")]
    return out + tracker.feed_many(events)


def test_forward_names_the_one_user_the_call_rang() -> None:
    out = forward([("1.1", "alice", "101")])
    (answer,) = [e for e in out if e["event"] == "answer"]
    assert answer["user"] == "Alice Agent"
    assert answer["answeringNumber"] == "491719990100"
    assert out[-1]["cause"] == "normalClearing"


def test_forward_names_the_user_after_the_hook_posted_the_newcall() -> None:
    out = forward([("1.1", "alice", "101")], claim=True)
    assert [e["event"] for e in out] == ["answer", "hangup"]  # the hook posted the newCall
    assert out[0]["user"] == "Alice Agent"


@pytest.mark.parametrize(
    "members", [[], [("1.1", "alice", "101"), ("1.2", "bob", "102")]], ids=["none", "two"]
)
def test_forward_names_nobody_when_it_cannot_tell_whose(
    members: list[tuple[str, str, str]],
) -> None:
    out = forward(members)
    (answer,) = [e for e in out if e["event"] == "answer"]
    assert "user" not in answer
    assert answer["answeringNumber"] == "491719990100"


# ------------------------------------------------------------------ as the daemon's user gets it

ISSUE_13 = sorted(n for n in EXPECTED if n.endswith(("_ast16", "_ast22")))


@pytest.mark.parametrize("name", ISSUE_13)
def test_lab_trace_through_the_shipped_eventfilter(name: str) -> None:
    """The traces hold what a read=all user gets; the daemon's user gets what the shipped
    filter lines pass, and must post the same."""
    passes = LegacyFilter(manager_eventfilters()).passes_event
    tracker = CallTracker(rules(name))
    got = []
    newexten = []
    for event in read_trace(TRACES / f"{name}.jsonl"):
        if passes(event):
            got.extend(tracker.feed(event))
            if event.get("Event") == "Newexten":
                newexten.append(event.get("Application"))
    got.extend(tracker.flush())
    assert set(newexten) <= {"VoiceMail"}
    assert ("voicemail" in name) is bool(newexten)
    calls = by_call(got)
    want = EXPECTED[name]
    assert [[e["event"] for e in c] for c in calls] == [[e["event"] for e in c] for c in want]
    for have_call, want_call in zip(calls, want, strict=True):
        for have, expected in zip(have_call, want_call, strict=True):
            assert {k: have.get(k) for k in expected} == expected

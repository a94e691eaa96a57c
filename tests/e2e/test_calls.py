"""Call scenarios through the real pbx: the exact CTI events Zammad stored, and what the world
(caller, handsets, carrier) saw."""

from __future__ import annotations

import pytest

from cti_bridge.demo.zammad import FakeZammad

from .expect import (
    answer,
    assert_calls,
    describe,
    expect_calls,
    hangup,
    new_call,
    wait_hangups,
    wait_quiet,
)
from .lab import RING_TIMEOUT, Daemon, Lab

pytestmark = pytest.mark.e2e

GROUP, QUEUE, ALICE_DID = "4930555100", "4930555200", "4930555300"


def test_inbound_group_answered_by_member(clean_lab: Lab, daemon: Daemon, zammad: FakeZammad):
    # Bob answers: no [users] entry, so his device's (non-ASCII) caller id name is the user.
    clean_lab.set_mode("alice", "ring")
    clean_lab.set_mode("bob", "answer")
    h = clean_lab.call(GROUP, "491710000011", talk=2)
    assert clean_lab.originate_response(h)["Response"] == "Success"
    expect_calls(
        zammad,
        [
            [
                new_call("491710000011", GROUP, "in"),
                answer("in", user="Jürgen Müller", answeringNumber="102"),
                hangup("in", "normalClearing"),
            ]
        ],
    )
    assert sorted(a["Target"] for a in clean_lab.arrivals(h.mark)) == ["alice", "bob"]


def test_inbound_all_busy(clean_lab: Lab, daemon: Daemon, zammad: FakeZammad):
    clean_lab.set_mode("alice", "busy")
    clean_lab.set_mode("bob", "busy")
    h = clean_lab.call(GROUP, "491710000012")
    assert clean_lab.originate_response(h)["Response"] == "Failure"
    expect_calls(
        zammad,
        [[new_call("491710000012", GROUP, "in"), hangup("in", "busy")]],
    )
    (result,) = clean_lab.dial_results(h.mark)
    assert result["DialStatus"] == "BUSY"


def test_inbound_no_answer(clean_lab: Lab, daemon: Daemon, zammad: FakeZammad):
    clean_lab.set_mode("alice", "ring")
    clean_lab.set_mode("bob", "ring")
    h = clean_lab.call(GROUP, "491710000013", ring_timeout=RING_TIMEOUT + 10)
    clean_lab.originate_response(h, timeout=RING_TIMEOUT + 15)
    expect_calls(
        zammad,
        [[new_call("491710000013", GROUP, "in"), hangup("in", "noAnswer")]],
    )


def test_inbound_caller_cancels(clean_lab: Lab, daemon: Daemon, zammad: FakeZammad):
    clean_lab.set_mode("alice", "ring")
    clean_lab.set_mode("bob", "ring")
    h = clean_lab.call(GROUP, "491710000014", ring_timeout=2)
    assert clean_lab.originate_response(h)["Response"] == "Failure"
    expect_calls(
        zammad,
        [[new_call("491710000014", GROUP, "in"), hangup("in", "cancel")]],
    )


def test_queue_answered(clean_lab: Lab, daemon: Daemon, zammad: FakeZammad):
    clean_lab.set_mode("alice", "answer")
    clean_lab.set_mode("bob", "ring")
    # The queue answers the caller at once; the caller stays 4 s (ring 1 s + talk).
    h = clean_lab.call(QUEUE, "491710000015", talk=4)
    assert clean_lab.originate_response(h)["Response"] == "Success"
    expect_calls(
        zammad,
        [
            [
                new_call("491710000015", QUEUE, "in", queue="helpdesk"),
                answer("in", user="Alice Agent", answeringNumber="101"),
                hangup("in", "normalClearing"),
            ]
        ],
    )


def test_queue_abandoned(clean_lab: Lab, daemon: Daemon, zammad: FakeZammad):
    clean_lab.set_mode("alice", "ring")
    clean_lab.set_mode("bob", "ring")
    h = clean_lab.call(QUEUE, "491710000016", talk=2)
    assert clean_lab.originate_response(h)["Response"] == "Success"
    expect_calls(
        zammad,
        [[new_call("491710000016", QUEUE, "in", queue="helpdesk"), hangup("in", "cancel")]],
    )


def test_inbound_anonymous(clean_lab: Lab, daemon: Daemon, zammad: FakeZammad):
    clean_lab.set_mode("alice", "answer")
    h = clean_lab.call(ALICE_DID, "anonymous", "Anonymous", talk=2)
    assert clean_lab.originate_response(h)["Response"] == "Success"
    expect_calls(
        zammad,
        [
            [
                new_call("anonymous", ALICE_DID, "in"),
                answer("in", user="Alice Agent", answeringNumber="101"),
                hangup("in", "normalClearing"),
            ]
        ],
    )


def test_outbound_answered(clean_lab: Lab, daemon: Daemon, zammad: FakeZammad):
    clean_lab.set_mode("491719990007", "answer")
    h = clean_lab.call_from_phone("alice", "0491719990007", talk=2)
    assert clean_lab.originate_response(h)["Response"] == "Success"
    expect_calls(
        zammad,
        [
            [
                new_call("101", "491719990007", "out", **{"user[]": ["Alice Agent"]}),
                answer("out", user=None),
                hangup("out", "normalClearing"),
            ]
        ],
    )
    (arrival,) = clean_lab.arrivals(h.mark)
    assert (arrival["Target"], arrival["SeenNum"]) == ("491719990007", "101")


@pytest.mark.parametrize(
    ("mode", "number", "cause", "dialstatus"),
    [
        ("busy", "491719990008", "busy", "BUSY"),
        ("notfound", "491719990009", "notFound", "CHANUNAVAIL"),
        ("congestion", "491719990010", "congestion", "CONGESTION"),
    ],
)
def test_outbound_not_answered(
    clean_lab: Lab,
    daemon: Daemon,
    zammad: FakeZammad,
    mode: str,
    number: str,
    cause: str,
    dialstatus: str,
):
    clean_lab.set_mode(number, mode)
    # Bob calls: no [users] entry, his device's name is posted.
    h = clean_lab.call_from_phone("bob", "0" + number)
    assert clean_lab.originate_response(h)["Response"] == "Failure"
    expect_calls(
        zammad,
        [[new_call("102", number, "out", **{"user[]": ["Jürgen Müller"]}), hangup("out", cause)]],
    )
    (arrival,) = clean_lab.arrivals(h.mark)
    assert arrival["Target"] == number


def test_phone_to_phone_not_posted(clean_lab: Lab, daemon: Daemon, zammad: FakeZammad):
    clean_lab.set_mode("bob", "answer")
    h = clean_lab.call_from_phone("alice", "102", talk=2)
    assert clean_lab.originate_response(h)["Response"] == "Success"
    clean_lab.wait_idle()
    wait_quiet(zammad, quiet=1.5)
    assert [a["Target"] for a in clean_lab.arrivals(h.mark)] == ["bob"]
    assert zammad.requests == [], describe(zammad)


@pytest.mark.zammad(blocked=("491710000099",))
def test_blocked_caller_rejected(clean_lab: Lab, daemon: Daemon, zammad: FakeZammad):
    clean_lab.set_mode("alice", "answer")
    clean_lab.set_mode("bob", "answer")
    pbx_mark = clean_lab.pbx_ami.mark()
    h = clean_lab.call(GROUP, "491710000099")
    assert clean_lab.originate_response(h)["Response"] == "Failure"
    calls = wait_hangups(zammad, 1)
    # No phone rang and the caller heard busy.
    assert clean_lab.arrivals(h.mark) == []
    assert clean_lab.pbx_ami.since(pbx_mark, "DialBegin") == []
    (result,) = clean_lab.dial_results(h.mark)
    assert (result["DialStatus"], result["Cause"]) == ("BUSY", "17")
    # Still logged, with exactly one hangup, and the cause the caller heard.
    assert_calls(
        zammad,
        calls,
        [[new_call("491710000099", GROUP, "in"), hangup("in", "busy")]],
    )


@pytest.mark.zammad(routing=(("4917199*", "4930555999"),))
def test_outbound_caller_id_set_by_zammad(clean_lab: Lab, daemon: Daemon, zammad: FakeZammad):
    clean_lab.set_mode("491719990011", "answer")
    h = clean_lab.call_from_phone("alice", "0491719990011", talk=1)
    assert clean_lab.originate_response(h)["Response"] == "Success"
    calls = wait_hangups(zammad, 1)
    (arrival,) = clean_lab.arrivals(h.mark)
    # Zammad's caller id replaced the number only; the name is the phone's.
    assert (arrival["Target"], arrival["SeenNum"], arrival["SeenName"]) == (
        "491719990011",
        "4930555999",
        "Alice Agent",
    )
    assert_calls(
        zammad,
        calls,
        [
            [
                new_call("101", "491719990011", "out"),
                answer("out"),
                hangup("out", "normalClearing"),
            ]
        ],
    )


def test_calls_are_kept_apart(clean_lab: Lab, daemon: Daemon, zammad: FakeZammad):
    """Two overlapping calls, one in and one out, each with its own events."""
    clean_lab.set_mode("491719990012", "answer")
    h1 = clean_lab.call(ALICE_DID, "491710000017", talk=3)  # alice rings: default answer
    h2 = clean_lab.call_from_phone("bob", "0491719990012", talk=1)
    clean_lab.originate_response(h1)
    clean_lab.originate_response(h2)
    calls = wait_hangups(zammad, 2)
    by_dir = {c.direction: c for c in calls}
    assert set(by_dir) == {"in", "out"}, describe(zammad)
    assert_calls(
        zammad,
        [by_dir["in"], by_dir["out"]],
        [
            [
                new_call("491710000017", ALICE_DID, "in"),
                answer("in", user="Alice Agent", answeringNumber="101"),
                hangup("in", "normalClearing"),
            ],
            [
                new_call("102", "491719990012", "out"),
                answer("out"),
                hangup("out", "normalClearing"),
            ],
        ],
    )


SHIPPED_HOOK_DID = "4930555901"  # routed through conf/asterisk/extensions_cti.conf as shipped


def test_shipped_hook_file_is_loaded(clean_lab: Lab):
    out = clean_lab.command("pbx", "dialplan show from-trunk-cti")
    assert "_X." in out and "AGI(agi://127.0.0.1:" in out, out
    assert f":{clean_lab.agi_port}/newcall" in out, out


@pytest.mark.zammad(blocked=("491710000098",))
def test_shipped_hook_rejects_and_reports(clean_lab: Lab, daemon: Daemon, zammad: FakeZammad):
    """The operator's hook as shipped: a blocked caller is rejected (busy, no phone rings), a
    normal one rings through to [from-pstn] and is reported like any other call."""
    clean_lab.set_mode("alice", "answer")
    h1 = clean_lab.call(SHIPPED_HOOK_DID, "491710000098")
    assert clean_lab.originate_response(h1)["Response"] == "Failure"
    (result,) = clean_lab.dial_results(h1.mark)
    assert result["DialStatus"] == "BUSY"
    assert clean_lab.arrivals(h1.mark) == []
    clean_lab.wait_idle()
    h2 = clean_lab.call(SHIPPED_HOOK_DID, "491710000097", talk=1)
    assert clean_lab.originate_response(h2)["Response"] == "Success"
    assert [a["Target"] for a in clean_lab.arrivals(h2.mark)] == ["alice"]
    expect_calls(
        zammad,
        [
            [new_call("491710000098", SHIPPED_HOOK_DID, "in"), hangup("in", "busy")],
            [
                new_call("491710000097", SHIPPED_HOOK_DID, "in"),
                answer("in", user="Alice Agent", answeringNumber="101"),
                hangup("in", "normalClearing"),
            ],
        ],
    )


def test_many_concurrent_calls(clean_lab: Lab, daemon: Daemon, zammad: FakeZammad):
    """Twelve overlapping calls of three kinds: each gets exactly its own events."""
    clean_lab.set_mode("alice", "answer")
    clean_lab.set_mode("bob", "ring")
    clean_lab.set_mode("default", "busy")  # every carrier number
    handles = []
    for i in range(4):
        handles.append(clean_lab.call(GROUP, f"49171000020{i}", talk=2))
        handles.append(clean_lab.call(ALICE_DID, f"49171000021{i}", talk=1))
        handles.append(clean_lab.call_from_phone("bob", f"049171999020{i}"))
    for h in handles:
        clean_lab.originate_response(h)
    calls = wait_hangups(zammad, len(handles))
    by_key = {(c.from_, c.to): c for c in calls}
    expected = {}
    for i in range(4):
        expected[(f"49171000020{i}", GROUP)] = [
            new_call(f"49171000020{i}", GROUP, "in"),
            answer("in", user="Alice Agent", answeringNumber="101"),
            hangup("in", "normalClearing"),
        ]
        expected[(f"49171000021{i}", ALICE_DID)] = [
            new_call(f"49171000021{i}", ALICE_DID, "in"),
            answer("in", user="Alice Agent", answeringNumber="101"),
            hangup("in", "normalClearing"),
        ]
        expected[("102", f"49171999020{i}")] = [
            new_call("102", f"49171999020{i}", "out"),
            hangup("out", "busy"),
        ]
    assert set(by_key) == set(expected), describe(zammad)
    keys = sorted(expected)
    assert_calls(zammad, [by_key[k] for k in keys], [expected[k] for k in keys])

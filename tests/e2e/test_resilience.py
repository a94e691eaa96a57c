"""Nothing is lost: Zammad outages, a daemon killed hard, the pbx restarted, the AMI link cut."""

from __future__ import annotations

import pytest

from cti_bridge.demo.zammad import CallLog, FakeZammad

from .conftest import DaemonFactory
from .expect import answer, assert_calls, describe, expect_calls, hangup, new_call, wait_hangups
from .lab import Daemon, Lab, TcpProxy

pytestmark = pytest.mark.e2e

ALICE_DID = "4930555300"


def by_from(z: FakeZammad, calls: list[CallLog], *numbers: str) -> list[CallLog]:
    """The calls in the order of the given ``from`` numbers (delivery is ordered per call only)."""
    found = {c.from_: c for c in calls}
    missing = [n for n in numbers if n not in found]
    assert not missing, f"no call from {missing}\n{describe(z)}"
    return [found[n] for n in numbers]


def answered_in(frm: str, to: str = ALICE_DID) -> list[dict[str, object]]:
    return [
        new_call(frm, to, "in"),
        answer("in", user="Alice Agent", answeringNumber="101"),
        hangup("in", "normalClearing"),
    ]


def answered_call_up(lab: Lab, zammad: FakeZammad, caller: str) -> None:
    """A call from ``caller`` to Alice, answered, its answer stored in Zammad; it stays up."""
    lab.set_mode("alice", "answer")
    h = lab.call(ALICE_DID, caller, talk=60)
    assert lab.originate_response(h)["Response"] == "Success"
    assert zammad.wait_for(lambda z: any("answer" in z.stored(c) for c in z.calls()), 10)


def test_zammad_down_during_calls_then_back(clean_lab: Lab, daemon: Daemon, zammad: FakeZammad):
    zammad.down()
    clean_lab.set_mode("alice", "answer")
    clean_lab.set_mode("491719990021", "busy")
    # Both calls go on although Zammad does not answer the hook (fail open).
    h1 = clean_lab.call(ALICE_DID, "491710000021", talk=1)
    assert clean_lab.originate_response(h1)["Response"] == "Success"
    clean_lab.wait_idle()
    h2 = clean_lab.call_from_phone("alice", "0491719990021")
    assert clean_lab.originate_response(h2)["Response"] == "Failure"
    assert [a["Target"] for a in clean_lab.arrivals(h2.mark)] == ["491719990021"]
    clean_lab.wait_idle()
    doc = daemon.wait_status(lambda d: d["outbox"]["pending"] == 5 and d["calls"]["active"] == 0)
    assert doc["zammad"]["state"] == "down", doc
    assert zammad.stored_count() == 0

    zammad.up()
    calls = wait_hangups(zammad, 2)
    assert_calls(
        zammad,
        by_from(zammad, calls, "491710000021", "101"),
        [
            answered_in("491710000021"),
            [new_call("101", "491719990021", "out"), hangup("out", "busy")],
        ],
    )
    doc = daemon.wait_status(lambda d: d["outbox"]["pending"] == 0)
    assert doc["zammad"]["state"] == "ok", doc


def test_daemon_killed_during_outage_loses_nothing(
    clean_lab: Lab, daemon: Daemon, zammad: FakeZammad
):
    zammad.down()
    clean_lab.set_mode("alice", "answer", talk=60)
    # Call A ends while Zammad is down: its three events wait in the outbox.
    ha = clean_lab.call(ALICE_DID, "491710000031", talk=1)
    assert clean_lab.originate_response(ha)["Response"] == "Success"
    clean_lab.wait_idle()
    daemon.wait_status(lambda d: d["outbox"]["pending"] == 3)
    # Call B is answered and still up when the daemon is killed.
    hb = clean_lab.call(ALICE_DID, "491710000032", talk=60)
    assert clean_lab.originate_response(hb)["Response"] == "Success"
    daemon.wait_status(lambda d: d["outbox"]["pending"] == 5)
    daemon.kill()
    daemon.start()
    daemon.wait_ready()
    clean_lab.hangup_all()  # B ends while the new daemon watches
    clean_lab.wait_idle()
    zammad.up()
    calls = wait_hangups(zammad, 2)
    assert_calls(
        zammad,
        by_from(zammad, calls, "491710000031", "491710000032"),
        [answered_in("491710000031"), answered_in("491710000032")],
        # The restarted daemon cannot know whether B's newCall reached Zammad before the kill.
        allow_refused_newcall=True,
    )


def test_ami_cut_while_call_ends(
    clean_lab: Lab, start_daemon: DaemonFactory, zammad: FakeZammad, ami_proxy: TcpProxy
):
    daemon = start_daemon(zammad, ami_port=ami_proxy.port)
    answered_call_up(clean_lab, zammad, "491710000041")
    since = daemon.wait_ready()["ami"]["since"]
    ami_proxy.cut()
    clean_lab.hangup_all()  # the call ends unseen
    clean_lab.wait_idle()
    ami_proxy.restore()
    daemon.wait_status(lambda d: d["ami"]["connected"] and d["ami"]["since"] != since)
    expect_calls(zammad, [answered_in("491710000041")])


def test_pbx_restart_daemon_reconnects(clean_lab: Lab, daemon: Daemon, zammad: FakeZammad):
    since = daemon.wait_ready()["ami"]["since"]
    clean_lab.restart_pbx()
    daemon.wait_status(lambda d: d["ami"]["connected"] and d["ami"]["since"] != since, 30)
    clean_lab.set_mode("alice", "answer")
    h = clean_lab.call(ALICE_DID, "491710000051", talk=1)
    assert clean_lab.originate_response(h)["Response"] == "Success"
    expect_calls(zammad, [answered_in("491710000051")])


@pytest.mark.zammad(blocked=("491710000081",))
def test_slow_zammad_fails_open_and_late_reject_is_not_applied(
    clean_lab: Lab, daemon: Daemon, zammad: FakeZammad
):
    """Zammad too slow for the hook ([agi] timeout 2 s): the blocked caller gets through, and
    the reject that comes with the late-stored newCall does not cut the call afterwards."""
    # Each held request outlasts the daemon's 1 s HTTP timeout and is dropped; the first two
    # take more than the hook's 2 s.
    zammad.delay(3.0, times=3)
    clean_lab.set_mode("alice", "answer")
    pbx_mark = clean_lab.pbx_ami.mark()
    h = clean_lab.call(ALICE_DID, "491710000081", talk=4)
    assert clean_lab.originate_response(h)["Response"] == "Success"
    assert [a["Target"] for a in clean_lab.arrivals(h.mark)] == ["alice"]
    expect_calls(zammad, [answered_in("491710000081")])
    # The caller ended the call (its BYE: HangupRequest), nobody cut it (AMI Hangup action:
    # SoftHangupRequest first).
    ends = [
        e["Event"]
        for e in clean_lab.pbx_ami.since(pbx_mark)
        if e["Event"] in ("HangupRequest", "SoftHangupRequest")
        and e.get("Channel", "").startswith("PJSIP/carrier-")
    ]
    assert ends[:1] == ["HangupRequest"], ends


def test_call_ends_while_daemon_is_down(clean_lab: Lab, daemon: Daemon, zammad: FakeZammad):
    """The daemon is killed during an answered call that ends before it is back: the call's
    hangup is still posted after the restart (the outbox holds an open call the PBX no longer
    has)."""
    answered_call_up(clean_lab, zammad, "491710000033")
    # Kill only once the answer is acknowledged in the outbox: a kill between Zammad storing it
    # and the daemon's ack re-sends it (at-least-once; tested elsewhere).
    daemon.wait_status(lambda d: d["outbox"]["pending"] == 0)
    daemon.kill()
    clean_lab.hangup_all()
    clean_lab.wait_idle()
    daemon.start()
    daemon.wait_ready()
    expect_calls(zammad, [answered_in("491710000033")], timeout=8)


def test_whole_call_during_ami_cut(
    clean_lab: Lab, start_daemon: DaemonFactory, zammad: FakeZammad, ami_proxy: TcpProxy
):
    """AMI is cut for a whole call: the FastAGI hook still posts its newCall; once AMI is back
    the call, gone from the PBX, is closed with exactly one hangup."""
    daemon = start_daemon(zammad, ami_port=ami_proxy.port)
    since = daemon.wait_ready()["ami"]["since"]
    ami_proxy.cut()
    daemon.wait_status(lambda d: not d["ami"]["connected"])
    clean_lab.set_mode("alice", "busy")
    clean_lab.set_mode("bob", "busy")
    h = clean_lab.call("4930555100", "491710000042")
    assert clean_lab.originate_response(h)["Response"] == "Failure"
    clean_lab.wait_idle()
    ami_proxy.restore()
    daemon.wait_status(lambda d: d["ami"]["connected"] and d["ami"]["since"] != since)
    calls = wait_hangups(zammad, 1, timeout=8)
    assert len(calls) == 1, describe(zammad)
    names = [e["event"] for e in calls[0].events]
    assert names == ["newCall", "hangup"], describe(zammad)
    assert calls[0].events[0]["from"] == "491710000042"


def test_pbx_restart_during_call_closes_it(clean_lab: Lab, daemon: Daemon, zammad: FakeZammad):
    """``core restart now`` drops an answered call: after reconnecting, the daemon closes it
    with one hangup."""
    answered_call_up(clean_lab, zammad, "491710000052")
    since = daemon.wait_ready()["ami"]["since"]
    clean_lab.restart_pbx()
    clean_lab.hangup_all()  # the world's half of the dropped call
    daemon.wait_status(lambda d: d["ami"]["connected"] and d["ami"]["since"] != since, 30)
    expect_calls(zammad, [answered_in("491710000052")], timeout=10)

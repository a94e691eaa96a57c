"""How calls end when no agent talks to the caller, or another one does (issue 13): voicemail,
IVRs, a blonde transfer and a forward to an outside number, with what Zammad must store for
each so that its caller log asks for a callback exactly when one is due.

Zammad keeps an inbound call "not done" when it was never answered (unless the hangup cause is
``forwarded``) or when the answering user is ``voicemail``.
"""

from __future__ import annotations

import time

import pytest

from cti_bridge.ami.wanted import WANTED_EVENTS
from cti_bridge.demo.zammad import CallLog, FakeZammad

from .conftest import DaemonFactory
from .expect import (
    answer,
    assert_call,
    describe,
    expect_calls,
    hangup,
    new_call,
    wait_hangups,
)
from .lab import AmiClient, Lab

pytestmark = pytest.mark.e2e

GROUP_VM = "4930555110"  # alice & bob ring 3 s, then alice's mailbox
ALICE_XFER = "4930555310"  # alice, transfers allowed
VOICEMAIL = "4930555400"  # alice's mailbox
FREEPBX_VM = "4930555410"  # alice rings 3 s, then Gosub(macro-vm,...) as FreePBX does
IVR = "4930555500"  # menu: 1 s prompt, 2 s wait, then hang up
FOLLOW_ME = "4930555600"  # alice's phone and her mobile MOBILE ring together
MOBILE = "491719990100"

GREETING = 8.0  # caller stays this long after VoiceMail() answers: greeting, beep, a message


def voicemail_call(caller: str, did: str) -> list[dict[str, str | None]]:
    """What Zammad must store for a caller who reached a mailbox."""
    return [
        new_call(caller, did, "in"),
        answer("in", user="voicemail"),
        hangup("in", "normalClearing"),
    ]


def test_voicemail_direct(clean_lab: Lab, daemon: object, zammad: FakeZammad):
    h = clean_lab.call(VOICEMAIL, "491710000401", talk=GREETING)
    assert clean_lab.originate_response(h)["Response"] == "Success"
    expect_calls(zammad, [voicemail_call("491710000401", VOICEMAIL)])
    assert clean_lab.arrivals(h.mark) == []


def test_voicemail_hangup_during_greeting(clean_lab: Lab, daemon: object, zammad: FakeZammad):
    h = clean_lab.call(VOICEMAIL, "491710000402", talk=1)
    assert clean_lab.originate_response(h)["Response"] == "Success"
    expect_calls(zammad, [voicemail_call("491710000402", VOICEMAIL)])


def test_voicemail_after_ring_group_timeout(clean_lab: Lab, daemon: object, zammad: FakeZammad):
    clean_lab.set_mode("alice", "ring")
    clean_lab.set_mode("bob", "ring")
    h = clean_lab.call(GROUP_VM, "491710000403", talk=GREETING)
    assert clean_lab.originate_response(h)["Response"] == "Success"
    expect_calls(zammad, [voicemail_call("491710000403", GROUP_VM)])
    assert sorted(a["Target"] for a in clean_lab.arrivals(h.mark)) == ["alice", "bob"]


def test_voicemail_freepbx_macro(clean_lab: Lab, daemon: object, zammad: FakeZammad):
    clean_lab.set_mode("alice", "ring")
    h = clean_lab.call(FREEPBX_VM, "491710000404", talk=GREETING)
    assert clean_lab.originate_response(h)["Response"] == "Success"
    expect_calls(zammad, [voicemail_call("491710000404", FREEPBX_VM)])


def test_daemon_ami_user_gets_voicemail_and_no_other_dialplan_step(clean_lab: Lab):
    """The shipped manager_cti.conf (read= with dialplan, the VoiceMail eventfilter line) as
    this Asterisk evaluates it: of all dialplan steps of an IVR call and a voicemail call, the
    daemon's user gets the VoiceMail one only, and nothing the bridge does not read."""
    cti = AmiClient(
        "127.0.0.1", clean_lab.pbx_ami_port, clean_lab.ami_username, clean_lab.ami_secret, "cti"
    ).connect()
    try:
        lab_mark = clean_lab.pbx_ami.mark()
        for number, caller in ((IVR, "491710000410"), (VOICEMAIL, "491710000411")):
            h = clean_lab.call(number, caller, talk=1)
            assert clean_lab.originate_response(h)["Response"] == "Success"
        clean_lab.wait_idle()
        got = cti.since(0)
    finally:
        cti.close()
    # What a read=all user saw of the same calls: every step, VarSet and more.
    apps = [e.get("Application") for e in clean_lab.pbx_ami.since(lab_mark, "Newexten")]
    assert {"Answer", "BackGround", "AGI", "Set", "VoiceMail"} <= set(apps), apps
    assert clean_lab.pbx_ami.since(lab_mark, "VarSet")
    assert [e.get("Application") for e in got if e.get("Event") == "Newexten"] == ["VoiceMail"]
    assert {str(e.get("Event")) for e in got} <= WANTED_EVENTS


def test_ivr_abandoned(clean_lab: Lab, daemon: object, zammad: FakeZammad):
    h = clean_lab.call(IVR, "491710000405", talk=1)
    assert clean_lab.originate_response(h)["Response"] == "Success"
    expect_calls(zammad, [[new_call("491710000405", IVR, "in"), hangup("in", "cancel")]])


def test_ivr_ends_without_a_person(clean_lab: Lab, daemon: object, zammad: FakeZammad):
    h = clean_lab.call(IVR, "491710000406", talk=20)
    assert clean_lab.originate_response(h)["Response"] == "Success"
    expect_calls(zammad, [[new_call("491710000406", IVR, "in"), hangup("in", "noAnswer")]])


def blonde_transfer(lab: Lab, caller: str) -> None:
    """``caller`` reaches alice; alice dials *2 102 (attended transfer to bob) and hangs up
    while bob's phone rings; bob answers 3 s later, talks 2 s and hangs up."""
    lab.set_mode("alice", "answer", talk=30)
    lab.set_mode("bob", "answer", talk=2, ring=4)
    h = lab.call(ALICE_XFER, caller, talk=30)
    assert lab.originate_response(h)["Response"] == "Success"
    alice = lab.answered_phone("alice", h.mark)
    lab.press(alice, "*2")
    time.sleep(1.0)  # the pbx answers *2 with its transfer prompt, then reads the number
    mark = lab.world_ami.mark()
    lab.press(alice, "102")
    lab.world_ami.wait_event(
        lambda e: e.get("UserEvent") == "WorldArrival" and e.get("Target") == "bob", since=mark
    )
    lab.hang_up_phone(alice)  # bob still rings: blonde
    lab.answered_phone("bob", mark)


def assert_caller_transferred(z: FakeZammad, call: CallLog, caller: str) -> None:
    """The caller's call: answered by alice, ended normally after bob took over. A transfer
    may add bob's answer (README: a transfer is a second ``answer``), nothing else; no request
    refused."""
    head = [new_call(caller, ALICE_XFER, "in"), answer("in", user="Alice Agent")]
    tail = [hangup("in", "normalClearing")]
    if len(call.events) == 4:
        head.append(answer("in", user="Jürgen Müller", answeringNumber="102"))
    assert_call(z, call, head + tail)
    assert all(r.status == 200 for r in z.requests), describe(z)


def test_blonde_transfer(clean_lab: Lab, start_daemon: DaemonFactory, zammad: FakeZammad):
    start_daemon(zammad)
    blonde_transfer(clean_lab, "491710000407")
    (call,) = wait_hangups(zammad, 1)
    assert_caller_transferred(zammad, call, "491710000407")


def test_blonde_transfer_report_internal(
    clean_lab: Lab, start_daemon: DaemonFactory, zammad: FakeZammad
):
    """The consultation call alice -> bob may be posted on its own (report_internal), but then
    it ends ``forwarded``: never a missed call in the caller log."""
    start_daemon(zammad, report_internal=True)
    blonde_transfer(clean_lab, "491710000408")
    calls = wait_hangups(zammad, 1)
    inbound = [c for c in calls if c.from_ == "491710000408"]
    assert len(inbound) == 1, describe(zammad)
    assert_caller_transferred(zammad, inbound[0], "491710000408")
    for call in calls:
        if call is inbound[0]:
            continue
        assert (call.from_, call.to) == ("101", "102"), describe(zammad)
        assert_call(zammad, call, [new_call("101", "102", "in"), hangup("in", "forwarded")])


def test_forward_to_outside_number(clean_lab: Lab, daemon: object, zammad: FakeZammad):
    """Alice's follow-me rings her phone and her mobile; the mobile answers: the call was
    answered, by alice (her forward), and is posted once."""
    clean_lab.set_mode("alice", "ring")
    clean_lab.set_mode(MOBILE, "answer", talk=2)
    h = clean_lab.call(FOLLOW_ME, "491710000409", talk=30)
    assert clean_lab.originate_response(h)["Response"] == "Success"
    expect_calls(
        zammad,
        [
            [
                new_call("491710000409", FOLLOW_ME, "in"),
                answer("in", user="Alice Agent"),
                hangup("in", "normalClearing"),
            ]
        ],
    )
    assert sorted(a["Target"] for a in clean_lab.arrivals(h.mark)) == sorted(["alice", MOBILE])

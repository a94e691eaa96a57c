"""The lab alone, without the daemon: the pbx behaves like the recorded lab and fails open."""

from __future__ import annotations

import pytest

from .lab import Lab

pytestmark = pytest.mark.e2e


def test_ring_group_dials_both_phones(clean_lab: Lab) -> None:
    lab = clean_lab
    lab.set_mode("alice", "busy")
    lab.set_mode("bob", "busy")
    mark = lab.pbx_ami.mark()
    h = lab.call("4930555100", "491710000001")
    res = lab.originate_response(h)
    assert res["Response"] == "Failure"
    lab.wait_idle()
    begins = lab.pbx_ami.since(mark, "DialBegin")
    assert sorted(e["DestChannel"].split("-")[0] for e in begins) == ["PJSIP/alice", "PJSIP/bob"]
    assert {e["Channel"].split("-")[0] for e in begins} == {"PJSIP/carrier"}
    assert {e["CallerIDNum"] for e in begins} == {"491710000001"}
    # The phones' own caller ids come from the pbx's endpoints, non-ASCII name included.
    assert {(e["DestCallerIDNum"], e["DestCallerIDName"]) for e in begins} == {
        ("101", "Alice Agent"),
        ("102", "Jürgen Müller"),
    }
    # The caller heard busy.
    (result,) = lab.dial_results(h.mark)
    assert (result["DialStatus"], result["Cause"]) == ("BUSY", "17")


def test_phone_is_identified_by_from_user(clean_lab: Lab) -> None:
    lab = clean_lab
    lab.set_mode("default", "busy")
    mark = lab.pbx_ami.mark()
    h = lab.call_from_phone("bob", "0491719990001")
    lab.originate_response(h)
    lab.wait_idle()
    chans = [
        e for e in lab.pbx_ami.since(mark, "Newchannel") if e["Channel"].startswith("PJSIP/bob")
    ]
    assert chans and chans[0]["Context"] == "from-internal"
    assert (chans[0]["CallerIDNum"], chans[0]["CallerIDName"]) == ("102", "Jürgen Müller")
    # Leaves through the carrier without the 0, with the phone's number.
    (arrival,) = lab.arrivals(h.mark)
    assert (arrival["Target"], arrival["SeenNum"], arrival["SeenName"]) == (
        "491719990001",
        "102",
        "Jürgen Müller",
    )


def test_agi_fails_open_without_daemon(clean_lab: Lab) -> None:
    lab = clean_lab
    lab.set_mode("alice", "answer")
    h = lab.call("4930555300", "491710000002", talk=1)
    assert lab.originate_response(h)["Response"] == "Success"
    assert [a["Target"] for a in lab.arrivals(h.mark)] == ["alice"]
    lab.wait_idle()

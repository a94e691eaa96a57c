"""Click-to-dial on the lab: the handler URL ``cti-bridge dial-link 101 --handler`` prints, with a
``tel:`` URL put in for ``%s``, rings alice; she answers, the PBX calls the number through the
outbound route, and Zammad gets one ordinary outbound call. A tampered key rings nothing."""

from __future__ import annotations

import subprocess
import time
import urllib.parse
from collections.abc import Callable

import httpx
import pytest

from cti_bridge.demo.zammad import FakeZammad

from .conftest import DaemonFactory
from .expect import answer, expect_calls, hangup, new_call, wait_quiet
from .lab import Daemon, Lab, daemon_command

pytestmark = pytest.mark.e2e

NUMBER = "491719990007"


@pytest.fixture
def dial_daemon(clean_lab: Lab, start_daemon: DaemonFactory, zammad: FakeZammad) -> Daemon:
    port = clean_lab.ports.port()
    secret = clean_lab.ami_secret + "-dial-link-secret"
    return start_daemon(
        zammad,
        extra_config=f"""
[web]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}/"

[dial]
secret = "{secret}"
devices = {{ "101" = "PJSIP/alice" }}
context = "from-internal"
prefix = "0"
""",
    )


def dial_link(daemon: Daemon, *args: str) -> str:
    r = subprocess.run(
        [*daemon_command(), "dial-link", *args, "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.1)


def test_a_dial_link_rings_alice_then_calls_the_number(
    clean_lab: Lab, dial_daemon: Daemon, zammad: FakeZammad
) -> None:
    clean_lab.set_mode("alice", "answer", talk=3)
    clean_lab.set_mode(NUMBER, "answer")
    template = dial_link(dial_daemon, "101", "--handler")
    assert template.count("%s") == 1
    url = template.replace("%s", urllib.parse.quote(f"tel:+{NUMBER}", safe=""))
    mark = clean_lab.world_ami.mark()
    r = httpx.get(url, headers={"accept": "application/json"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["message"] == "Your phone 101 rings; pick it up to call +49 171 9990007."
    outcome = url.split("/call?")[0] + "/outcome/" + r.json()["attempt"]
    wait_for(lambda: httpx.get(outcome, timeout=5).json()["state"] != "ringing")
    assert httpx.get(outcome, timeout=5).json()["state"] == "answered"
    wait_for(lambda: len(clean_lab.arrivals(mark)) >= 2)
    alice, carrier = clean_lab.arrivals(mark)[:2]
    assert alice["Target"] == "alice"
    assert alice["SeenName"] == "\u2192 +49 171 9990007"
    assert (carrier["Target"], carrier["SeenNum"]) == (NUMBER, "101")
    expect_calls(
        zammad,
        [
            [
                new_call("101", NUMBER, "out", **{"user[]": ["Alice Agent"]}),
                answer("out", user=None),
                hangup("out", "normalClearing"),
            ]
        ],
    )


def test_alice_not_picking_up_posts_nothing(
    clean_lab: Lab, dial_daemon: Daemon, zammad: FakeZammad
) -> None:
    clean_lab.set_mode("alice", "busy")
    template = dial_link(dial_daemon, "101", "--handler")
    url = template.replace("%s", urllib.parse.quote(f"tel:+{NUMBER}", safe=""))
    mark = clean_lab.world_ami.mark()
    r = httpx.get(url, headers={"accept": "application/json"}, timeout=10)
    assert r.status_code == 200, r.text
    outcome = url.split("/call?")[0] + "/outcome/" + r.json()["attempt"]
    wait_for(lambda: httpx.get(outcome, timeout=5).json()["state"] != "ringing")
    # Asterisk reports a PJSIP 486 as Reason 0 or 5 (ami/originate.py): not picked up, or busy.
    assert httpx.get(outcome, timeout=5).json()["state"] in ("busy", "no-answer")
    assert [a["Target"] for a in clean_lab.arrivals(mark)] == ["alice"]
    wait_quiet(zammad, quiet=2.0)
    assert zammad.calls() == {}
    assert zammad.requests == []


def test_a_tampered_key_gets_403_and_nothing_rings(
    clean_lab: Lab, dial_daemon: Daemon, zammad: FakeZammad
) -> None:
    template = dial_link(dial_daemon, "101", "--handler")
    key = template.split("key=")[1].split("&")[0]
    tampered = template.replace(key, key[::-1]).replace("%s", f"tel%3A%2B{NUMBER}")
    mark = clean_lab.world_ami.mark()
    pbx_mark = clean_lab.pbx_ami.mark()
    r = httpx.get(tampered, timeout=10)
    assert r.status_code == 403
    time.sleep(2.0)
    assert clean_lab.arrivals(mark) == []
    assert clean_lab.pbx_ami.since(pbx_mark, "Newchannel") == []
    assert key not in dial_daemon.log_tail(400)

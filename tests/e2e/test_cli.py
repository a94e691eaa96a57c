"""``cti-bridge status --json`` and ``cti-bridge check`` against the live lab."""

from __future__ import annotations

from pathlib import Path

import pytest

from cti_bridge.demo.zammad import FakeZammad

from .expect import assert_calls as assert_zammad_calls
from .expect import hangup, new_call, wait_hangups
from .lab import Daemon, Lab, daemon_config

pytestmark = pytest.mark.e2e


def test_status_json_follows_a_call(clean_lab: Lab, daemon: Daemon, zammad: FakeZammad):
    rc, doc, out = daemon.status()
    assert rc == 0, out
    assert doc is not None, out
    assert doc["ami"]["connected"] is True
    assert doc["zammad"]["state"] == "ok"
    assert doc["calls"]["active"] == 0
    assert doc["outbox"]["pending"] == 0
    assert doc["uptime_s"] >= 0
    assert "agi" in doc
    for secret in (clean_lab.ami_secret, zammad.token):
        assert secret not in out

    clean_lab.set_mode("alice", "ring")
    clean_lab.set_mode("bob", "ring")
    h = clean_lab.call("4930555100", "491710000061", ring_timeout=30)
    daemon.wait_status(lambda d: d["calls"]["active"] == 1)
    clean_lab.pbx.rx("channel request hangup all")  # the pbx ends the call: no answer
    clean_lab.originate_response(h)
    calls = wait_hangups(zammad, 1)
    assert len(calls) == 1
    daemon.wait_status(lambda d: d["calls"]["active"] == 0 and d["outbox"]["pending"] == 0)


def test_status_exit_3_without_daemon(clean_lab: Lab, tmp_path: Path, zammad: FakeZammad):
    cfg = daemon_config(
        tmp_path,
        ami_port=clean_lab.pbx_ami_port,
        ami_username=clean_lab.ami_username,
        ami_secret=clean_lab.ami_secret,
        zammad_url=zammad.url(),
        agi_port=clean_lab.agi_port,
    )
    rc, _, out = Daemon(cfg, tmp_path / "unused.log").status()
    assert rc == 3, out


def _check(lab: Lab, tmp: Path, zammad_url: str, secret: str) -> tuple[int, str]:
    cfg = daemon_config(
        tmp,
        ami_port=lab.pbx_ami_port,
        ami_username=lab.ami_username,
        ami_secret=secret,
        zammad_url=zammad_url,
        agi_port=lab.agi_port,
    )
    r = Daemon(cfg, tmp / "unused.log").check()
    return r.returncode, r.stdout + r.stderr


def test_check_passes_against_live_lab(clean_lab: Lab, tmp_path: Path, zammad: FakeZammad):
    rc, out = _check(clean_lab, tmp_path, zammad.url(), clean_lab.ami_secret)
    assert rc == 0, out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert lines and all(ln.startswith("ok") for ln in lines), out
    for secret in (clean_lab.ami_secret, zammad.token):
        assert secret not in out
    # A check is no call: nothing was posted to Zammad's call log.
    assert zammad.calls() == {}


def test_check_fails_on_wrong_ami_secret(clean_lab: Lab, tmp_path: Path, zammad: FakeZammad):
    rc, out = _check(clean_lab, tmp_path, zammad.url(), "not-the-secret")
    assert rc != 0, out
    assert any(ln.startswith("FAIL") for ln in out.splitlines()), out
    assert "not-the-secret" not in out


def test_check_fails_on_wrong_zammad_token(clean_lab: Lab, tmp_path: Path, zammad: FakeZammad):
    rc, out = _check(clean_lab, tmp_path, zammad.url("wrong-token-123"), clean_lab.ami_secret)
    assert rc != 0, out
    assert any(ln.startswith("FAIL") for ln in out.splitlines()), out
    assert "wrong-token-123" not in out


def test_daemon_down_calls_go_on_then_tracked_after_start(
    clean_lab: Lab, start_daemon, zammad: FakeZammad
):
    """Fail open: with the daemon down the call is made; a call after the start is posted."""
    clean_lab.set_mode("491719990071", "busy")
    h = clean_lab.call_from_phone("alice", "0491719990071")
    clean_lab.originate_response(h)
    assert [a["Target"] for a in clean_lab.arrivals(h.mark)] == ["491719990071"]
    clean_lab.wait_idle()
    start_daemon(zammad)
    h = clean_lab.call_from_phone("alice", "0491719990072")  # default: answer
    clean_lab.originate_response(h)
    calls = wait_hangups(zammad, 1)
    assert_zammad_calls(
        zammad,
        calls,
        [
            [
                new_call("101", "491719990072", "out"),
                {"event": "answer"},
                hangup("out", "normalClearing"),
            ]
        ],
    )


def test_wrong_token_keeps_events_until_config_fixed(
    clean_lab: Lab, start_daemon, zammad: FakeZammad
):
    """Zammad refuses the token: status says so, events stay in the outbox; after the operator
    fixes the URL and restarts the daemon, they are delivered."""
    daemon = start_daemon(zammad, zammad_url=zammad.url("wrong-token-456"))
    clean_lab.set_mode("alice", "answer")
    h = clean_lab.call("4930555300", "491710000091", talk=1)
    assert clean_lab.originate_response(h)["Response"] == "Success"
    clean_lab.wait_idle()
    doc = daemon.wait_status(lambda d: d["outbox"]["pending"] == 3 and d["calls"]["active"] == 0)
    assert doc["zammad"]["state"] == "rejected", doc
    rc, _, out = daemon.status()
    assert rc == 0 and "wrong-token-456" not in out, out
    assert zammad.calls() == {}

    daemon.stop()
    daemon_config(
        daemon.config.parent,
        ami_port=clean_lab.pbx_ami_port,
        ami_username=clean_lab.ami_username,
        ami_secret=clean_lab.ami_secret,
        zammad_url=zammad.url(),
        agi_port=clean_lab.agi_port,
    )
    daemon.start()
    calls = wait_hangups(zammad, 1)
    assert_zammad_calls(
        zammad,
        calls,
        [
            [
                new_call("491710000091", "4930555300", "in"),
                {"event": "answer", "user": "Alice Agent", "answeringNumber": "101"},
                hangup("in", "normalClearing"),
            ]
        ],
    )
    assert "wrong-token-456" not in daemon.log.read_text("utf-8", "replace")


def test_daemon_with_wrong_ami_secret_says_so(clean_lab: Lab, start_daemon, zammad: FakeZammad):
    """A refused AMI login is visible in status (and the secret is not)."""
    daemon = start_daemon(zammad, ami_secret="not-the-secret-789", wait=False)
    doc = daemon.wait_status(lambda d: bool(d["ami"]["login_failed"]))
    assert doc["ami"]["connected"] is False
    rc, _, out = daemon.status()
    assert rc == 0, out
    assert "not-the-secret-789" not in out
    assert "not-the-secret-789" not in daemon.log.read_text("utf-8", "replace")

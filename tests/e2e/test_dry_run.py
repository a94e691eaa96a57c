"""``cti-bridge run --dry-run`` against the lab: Zammad receives nothing, the calls show up in
``status``, and the FastAGI hook lets even a caller Zammad would block ring through."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cti_bridge.demo.zammad import FakeZammad

from .conftest import DaemonFactory
from .expect import wait_quiet
from .lab import Lab, daemon_command

pytestmark = pytest.mark.e2e

GROUP, BLOCKED = "4930555100", "491710000091"


@pytest.mark.zammad(blocked=(BLOCKED,))
def test_dry_run_posts_nothing_and_shows_the_calls(
    clean_lab: Lab, start_daemon: DaemonFactory, zammad: FakeZammad
):
    daemon = start_daemon(zammad, dry_run=True)
    clean_lab.set_mode("alice", "answer")
    clean_lab.set_mode("491719990031", "busy")
    h1 = clean_lab.call(GROUP, BLOCKED, talk=1)
    # Unchanged: the blocked caller is not rejected, a phone answers.
    assert clean_lab.originate_response(h1)["Response"] == "Success"
    assert "alice" in [a["Target"] for a in clean_lab.arrivals(h1.mark)]
    clean_lab.wait_idle()
    h2 = clean_lab.call_from_phone("bob", "0491719990031")
    clean_lab.originate_response(h2)
    (arrival,) = clean_lab.arrivals(h2.mark)
    assert arrival["SeenNum"] == "102"  # no caller ID from Zammad: none was asked
    doc = daemon.wait_status(
        lambda d: (
            len(d["recent_calls"]) == 2 and all(c["state"] == "hangup" for c in d["recent_calls"])
        )
    )
    wait_quiet(zammad, quiet=1.0)
    assert zammad.requests == []
    calls = [(c["direction"], c["from"], c["to"], c["cause"]) for c in doc["recent_calls"]]
    assert calls == [
        ("out", "102", "491719990031", "busy"),
        ("in", BLOCKED, GROUP, "normalClearing"),
    ]
    assert {c["delivery"] for c in doc["recent_calls"]} == {"dry run"}
    assert doc["dry_run"] is True and doc["zammad"]["would_post"] >= 5
    assert doc["outbox"]["pending"] == 0
    text = subprocess.run(
        [*daemon_command(), "status", "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    assert "dry run: nothing posted" in text and f"in {BLOCKED} -> {GROUP}" in text, text
    daemon.stop()
    assert not (Path(daemon.config).parent / "outbox.sqlite3").exists()

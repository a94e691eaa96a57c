"""Replay the e2e lab's own recorded traces (tests/e2e/traces, recorded with CTI_E2E_RECORD)
through the call model and compare with EXPECTED.json: what Zammad must store per call.

The traces of issue 13's scenarios (voicemail, IVR, blonde transfer, forward; one per Asterisk
version, ``_ast16``/``_ast22``) expect what the issue requires.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cti_bridge.calls.trace import read_trace
from cti_bridge.calls.tracker import CallRules, CallTracker
from cti_bridge.events import CtiEvent

TRACES = Path(__file__).resolve().parent.parent / "e2e" / "traces"
EXPECTED: dict[str, list[list[dict[str, Any]]]] = json.loads(
    (TRACES / "EXPECTED.json").read_text("utf-8")
)


def rules(name: str) -> CallRules:
    """The e2e daemon's configuration (cti_bridge/demo/lab.py daemon_config) for trace ``name``."""
    return CallRules(
        trunk_endpoints=("carrier",),
        trunk_contexts=("from-trunk",),
        internal_contexts=("from-internal",),
        users={"101": "Alice Agent"},
        report_internal="report_internal" in name,
    )


def by_call(events: list[CtiEvent]) -> list[list[CtiEvent]]:
    """The events grouped per callId, calls in the order of their first event."""
    calls: dict[str, list[CtiEvent]] = {}
    for ev in events:
        calls.setdefault(str(ev["callId"]), []).append(ev)
    return list(calls.values())


def test_every_trace_has_an_expectation() -> None:
    assert sorted(p.stem for p in TRACES.glob("*.jsonl")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_lab_trace_replays_as_expected(name: str) -> None:
    tracker = CallTracker(rules(name))
    got: list[CtiEvent] = []
    for event in read_trace(TRACES / f"{name}.jsonl"):
        got.extend(tracker.feed(event))
    got.extend(tracker.flush())
    calls = by_call(got)
    want = EXPECTED[name]
    assert [[e["event"] for e in c] for c in calls] == [[e["event"] for e in c] for c in want]
    for have_call, want_call in zip(calls, want, strict=True):
        for have, expected in zip(have_call, want_call, strict=True):
            for key, value in expected.items():
                assert have.get(key) == value, (name, key, have)

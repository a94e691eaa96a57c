"""``cti-bridge replay``: a recorded trace through the call model, no network."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import cli


def test_replay_prints_one_cti_event_per_line(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    events = [
        {
            "Event": "Newchannel",
            "Channel": "PJSIP/carrier-00000001",
            "Uniqueid": "1.1",
            "Linkedid": "1.1",
            "CallerIDNum": "491711234567",
            "Exten": "4930555100",
            "Context": "from-trunk",
            "ChannelState": "0",
        },
        {
            "Event": "Hangup",
            "Channel": "PJSIP/carrier-00000001",
            "Uniqueid": "1.1",
            "Linkedid": "1.1",
            "Cause": "16",
        },
    ]
    trace.write_text("".join(json.dumps(e) + "\n" for e in events))
    res = cli("replay", str(trace))
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(e["event"], e["callId"], e["direction"]) for e in lines] == [
        ("newCall", "1.1", "in"),
        ("hangup", "1.1", "in"),
    ]


def test_replay_of_a_broken_trace_is_one_line_and_exit_2(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text("{not json\n")
    res = cli("replay", str(trace))
    assert res.returncode == 2
    assert res.stderr.startswith("cti-bridge: ") and len(res.stderr.strip().splitlines()) == 1

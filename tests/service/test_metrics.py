"""Prometheus metrics: values from the snapshot, directly fed POST metrics.

The scrape over HTTP is in tests/web (the endpoint is on the web listener).
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from cti_bridge import __version__
from cti_bridge.service.metrics import Metrics

SNAPSHOT: dict[str, Any] = {
    "ami": {"connected": True, "events_read": 1234, "events_filtered": 800, "frames_malformed": 2},
    "zammad": {
        "state": "ok",
        "url": "https://zammad.example/api/v1/cti/***",
        "retries": 5,
        "dead": 1,
    },
    "calls": {"active": 3},
    "outbox": {"pending": 7, "oldest_age_s": 12.5, "dead": 4},
    "agi": {
        "decisions": {"reject": 1, "dial": 3, "none": 8},
        "timeouts": 2,
        "errors": 0,
        "dropped": 4,
        "refused": 0,
    },
}


def samples(text: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    if isinstance(text, bytes):
        text = text.decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_snapshot_values() -> None:
    got = samples(Metrics(lambda: SNAPSHOT).render())
    assert got[("cti_bridge_ami_connected", ())] == 1
    assert got[("cti_bridge_ami_events_total", ())] == 1234
    assert got[("cti_bridge_ami_events_filtered_total", ())] == 800
    assert got[("cti_bridge_ami_frames_malformed_total", ())] == 2
    assert got[("cti_bridge_zammad_up", ())] == 1
    assert got[("cti_bridge_post_retries_total", ())] == 5
    assert got[("cti_bridge_outbox_depth", ())] == 7
    assert got[("cti_bridge_outbox_oldest_age_seconds", ())] == 12.5
    assert got[("cti_bridge_dead_letters_total", ())] == 1
    assert got[("cti_bridge_dead_letters_stored", ())] == 4
    assert got[("cti_bridge_active_calls", ())] == 3
    for action, n in (("reject", 1), ("dial", 3), ("none", 8)):
        assert got[("cti_bridge_agi_decisions_total", (("action", action),))] == n
    assert got[("cti_bridge_agi_timeouts_total", ())] == 2
    assert got[("cti_bridge_agi_dropped_total", ())] == 4


def test_values_follow_the_snapshot_and_missing_keys_are_left_out() -> None:
    doc: dict[str, Any] = {"ami": {"connected": False}, "zammad": {"state": "down"}}
    metrics = Metrics(lambda: doc)
    got = samples(metrics.render())
    assert got[("cti_bridge_ami_connected", ())] == 0
    assert got[("cti_bridge_zammad_up", ())] == 0
    assert not any(name == "cti_bridge_active_calls" for name, _ in got)
    doc["calls"] = {"active": 9}
    doc["outbox"] = {"pending": "garbage"}
    got = samples(metrics.render())
    assert got[("cti_bridge_active_calls", ())] == 9
    assert not any(name == "cti_bridge_outbox_depth" for name, _ in got)


def test_delivery_status_keys_under_zammad() -> None:
    # Delivery.status() reports the outbox under "zammad"; the outbox section wins when present.
    doc = {"zammad": {"state": "down", "pending": 4, "oldest_age_s": 30.0, "dead": 6}}
    got = samples(Metrics(lambda: doc).render())
    assert got[("cti_bridge_outbox_depth", ())] == 4
    assert got[("cti_bridge_outbox_oldest_age_seconds", ())] == 30
    assert got[("cti_bridge_dead_letters_total", ())] == 6
    doc["outbox"] = {"pending": 1}
    assert samples(Metrics(lambda: doc).render())[("cti_bridge_outbox_depth", ())] == 1


def test_build_info() -> None:
    got = samples(Metrics(lambda: {}).render())
    assert got[("cti_bridge_build_info", (("version", __version__),))] == 1


def test_observe_post() -> None:
    metrics = Metrics(lambda: {})
    metrics.observe_post("newCall", "ok", 0.12)
    metrics.observe_post("newCall", "ok", 0.3)
    metrics.observe_post("hangup", "retry", None)
    got = samples(metrics.render())
    posted = "cti_bridge_cti_events_posted_total"
    assert got[(posted, (("event", "newCall"), ("result", "ok")))] == 2
    assert got[(posted, (("event", "hangup"), ("result", "retry")))] == 1
    assert got[("cti_bridge_post_latency_seconds_count", ())] == 2
    assert got[("cti_bridge_post_latency_seconds_bucket", (("le", "0.25"),))] == 1
    assert abs(got[("cti_bridge_post_latency_seconds_sum", ())] - 0.42) < 1e-9


def test_instances_do_not_clash() -> None:
    a = Metrics(lambda: {"calls": {"active": 1}})
    b = Metrics(lambda: {"calls": {"active": 2}})
    a.observe_post("answer", "ok", 0.1)
    assert samples(a.render())[("cti_bridge_active_calls", ())] == 1
    assert samples(b.render())[("cti_bridge_active_calls", ())] == 2
    assert not any(
        name.startswith("cti_bridge_cti_events_posted") for name, _ in samples(b.render())
    )


def test_failing_snapshot_keeps_direct_metrics() -> None:
    def snapshot() -> dict[str, Any]:
        raise RuntimeError("boom")

    metrics = Metrics(snapshot)
    metrics.observe_post("newCall", "ok", 0.1)
    got = samples(metrics.render())
    assert got[("cti_bridge_post_latency_seconds_count", ())] == 1
    assert not any(name == "cti_bridge_active_calls" for name, _ in got)

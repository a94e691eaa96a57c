"""Prometheus metrics, served as ``/metrics`` by the web listener (``[web] listen``).

Components keep plain int counters and expose them through the daemon's status ``snapshot()``;
this module reads that snapshot at scrape time, so the hot path (AMI events, AGI calls) pays
nothing for metrics and the numbers on /metrics and in ``cti-bridge status`` cannot disagree.
Only the POST latency histogram and the per-result POST counter are fed directly, through
``observe_post()``, because a snapshot cannot carry a distribution.

Snapshot keys read (missing keys just leave the series out)::

    ami.connected (bool)            -> cti_bridge_ami_connected
    ami.events_read                 -> cti_bridge_ami_events_total
    ami.events_filtered             -> cti_bridge_ami_events_filtered_total
    ami.frames_malformed            -> cti_bridge_ami_frames_malformed_total
    zammad.state == "ok"            -> cti_bridge_zammad_up
    zammad.retries                  -> cti_bridge_post_retries_total
    ami.reconnects                  -> cti_bridge_ami_reconnects_total
    outbox.pending                  -> cti_bridge_outbox_depth
    outbox.oldest_age_s             -> cti_bridge_outbox_oldest_age_seconds
    zammad.dead (Delivery, monotonic) -> cti_bridge_dead_letters_total
    outbox.dead (rows in the outbox) -> cti_bridge_dead_letters_stored
    calls.active                    -> cti_bridge_active_calls
    agi.decisions.{action}          -> cti_bridge_agi_decisions_total{action}
    agi.timeouts / errors / dropped / refused -> cti_bridge_agi_{...}_total

(``pending`` and ``oldest_age_s`` are also found under ``zammad``, where
``Delivery.status()`` puts them.) Also exported: ``cti_bridge_build_info{version}`` and the
``process_*`` metrics of prometheus_client.

The endpoint is prometheus_client's ASGI app on the daemon's own event loop
(``cti_bridge.web``), so a scrape reads the snapshot on the loop that owns the state: no thread,
no hand-off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cti_bridge import __version__

log = logging.getLogger(__name__)

Snapshot = Callable[[], Mapping[str, Any]]
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class _Series:
    name: str  # counters without the _total suffix; prometheus_client appends it
    kind: Literal["gauge", "counter"]
    paths: tuple[str, ...]  # dotted snapshot paths, first present one wins
    help: str
    label: str | None = None  # the value is a {label value: number} mapping


def _gauge(name: str, paths: str, help: str, label: str | None = None) -> _Series:
    return _Series(name, "gauge", tuple(paths.split()), help, label)


def _counter(name: str, paths: str, help: str, label: str | None = None) -> _Series:
    return _Series(name, "counter", tuple(paths.split()), help, label)


_SERIES = (
    _gauge("cti_bridge_ami_connected", "ami.connected", "1 while logged in to AMI"),
    _counter("cti_bridge_ami_events", "ami.events_read", "AMI events read"),
    _counter(
        "cti_bridge_ami_events_filtered", "ami.events_filtered", "AMI events ignored (not calls)"
    ),
    _counter("cti_bridge_ami_frames_malformed", "ami.frames_malformed", "Unparsable AMI frames"),
    _counter("cti_bridge_ami_reconnects", "ami.reconnects", "AMI logins after the first"),
    _gauge("cti_bridge_zammad_up", "zammad.up", "1 while Zammad accepts events"),
    _counter("cti_bridge_post_retries", "zammad.retries", "POSTs to Zammad that will be retried"),
    _gauge("cti_bridge_outbox_depth", "outbox.pending zammad.pending", "Events waiting to post"),
    _gauge(
        "cti_bridge_outbox_oldest_age_seconds",
        "outbox.oldest_age_s zammad.oldest_age_s",
        "Age of the oldest waiting event",
    ),
    _counter(
        "cti_bridge_dead_letters",
        "zammad.dead",
        "Events given up on since start (too old or refused by Zammad)",
    ),
    _gauge("cti_bridge_dead_letters_stored", "outbox.dead", "Dead letters kept in the outbox"),
    _gauge("cti_bridge_active_calls", "calls.active", "Calls in progress"),
    _counter("cti_bridge_agi_decisions", "agi.decisions", "FastAGI decisions applied", "action"),
    _counter("cti_bridge_agi_timeouts", "agi.timeouts", "AGI decisions that timed out"),
    _counter("cti_bridge_agi_errors", "agi.errors", "AGI decision or dialogue errors"),
    _counter("cti_bridge_agi_dropped", "agi.dropped", "AGI connections dropped"),
    _counter("cti_bridge_agi_refused", "agi.refused", "AGI peers not in [agi] allow"),
)


def _lookup(doc: Mapping[str, Any], paths: tuple[str, ...]) -> Any:
    for path in paths:
        value: Any = doc
        for key in path.split("."):
            value = value.get(key) if isinstance(value, Mapping) else None
        if value is not None:
            return value
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def _derived(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """Add values that are a function of the snapshot rather than a field of it."""
    zammad = doc.get("zammad")
    if isinstance(zammad, Mapping) and "state" in zammad:
        return {**doc, "zammad": {**zammad, "up": zammad["state"] == "ok"}}
    return doc


def families(doc: Mapping[str, Any]) -> Iterable[Metric]:
    doc = _derived(doc)
    for series in _SERIES:
        value = _lookup(doc, series.paths)
        family: GaugeMetricFamily | CounterMetricFamily
        labels = [series.label] if series.label else None
        if series.kind == "gauge":
            family = GaugeMetricFamily(series.name, series.help, labels=labels)
        else:
            family = CounterMetricFamily(series.name, series.help, labels=labels)
        if series.label:
            if not isinstance(value, Mapping):
                continue
            for key, item in sorted(value.items()):
                n = _number(item)
                if n is not None:
                    family.add_metric([str(key)], n)
        else:
            n = _number(value)
            if n is None:
                continue
            family.add_metric([], n)
        yield family


class _SnapshotCollector(Collector):
    def __init__(self, read: Callable[[], Mapping[str, Any] | None]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        doc = self._read()
        return families(doc) if doc is not None else ()


class Metrics:
    """Prometheus metrics on a private registry (tests and several instances never clash)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self.registry = CollectorRegistry(auto_describe=False)
        self._posted = Counter(
            "cti_bridge_cti_events_posted",
            "CTI events POSTed to Zammad, by event and result",
            ["event", "result"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "cti_bridge_post_latency_seconds",
            "Time for one POST to Zammad",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_SnapshotCollector(self._read_snapshot))
        ProcessCollector(registry=self.registry)
        Info("cti_bridge_build", "cti-bridge version", registry=self.registry).info(
            {"version": __version__}
        )

    def observe_post(self, event: str, result: str, latency_s: float | None = None) -> None:
        """Count one POST attempt (result e.g. ok, retry, rejected, dead) and its latency."""
        self._posted.labels(event=event, result=result).inc()
        if latency_s is not None:
            self._latency.observe(latency_s)

    def _read_snapshot(self) -> Mapping[str, Any] | None:
        try:
            return self._snapshot()
        except Exception as exc:  # a scrape must still return the directly fed metrics
            log.warning("metrics snapshot failed: %s", type(exc).__name__)
            return None

    def render(self) -> bytes:
        return generate_latest(self.registry)

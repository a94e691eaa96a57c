"""Property tests: the tracker over mangled real traces (mid-call attach, duplicates, overlap).

The traces are the recorded corpus; hypothesis only chooses how to cut, repeat and interleave
them, so every stream is one a real PBX connection could deliver.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cti_bridge.calls.trace import read_trace
from cti_bridge.calls.tracker import CallRules, CallTracker
from cti_bridge.events import CtiEvent
from tests.calls.test_corpus import CACO_RULES, LAB_RULES
from tests.support.relabel import relabel

Trace = list[dict[str, str]]

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Corpus:
    lab: dict[str, Trace]
    caco: dict[str, Trace]
    # cacofonisk SystemName -> files recorded on it (their ids do not overlap).
    caco_systems: dict[str, list[str]]

    def all(self) -> list[tuple[str, Trace, CallRules]]:
        return [(n, t, LAB_RULES) for n, t in sorted(self.lab.items())] + [
            (n, t, CACO_RULES) for n, t in sorted(self.caco.items())
        ]


@pytest.fixture(scope="module")
def corpus(corpus_dir: Path) -> Corpus:
    lab = {p.stem: list(read_trace(p)) for p in sorted((corpus_dir / "lab-pjsip").glob("*.jsonl"))}
    caco_root = corpus_dir / "cacofonisk"
    caco = {str(p.relative_to(caco_root)): list(read_trace(p)) for p in caco_root.rglob("*.json")}
    systems: dict[str, list[str]] = defaultdict(list)
    for name, trace in sorted(caco.items()):
        found = {e["SystemName"] for e in trace if e.get("SystemName")}
        if len(found) == 1:
            systems[found.pop()].append(name)
    assert lab and caco, "corpus is empty"
    return Corpus(lab, caco, {s: n for s, n in systems.items() if len(n) >= 2})


def run(events: Sequence[dict[str, str]], rules: CallRules) -> tuple[list[CtiEvent], CallTracker]:
    tracker = CallTracker(rules)
    out: list[CtiEvent] = []
    for ev in events:
        out.extend(tracker.feed(ev))
    out.extend(tracker.flush())
    return out, tracker


def check_stream(out: list[CtiEvent], tracker: CallTracker, *, drained: bool = True) -> None:
    """The invariants any stream must keep; ``drained``: every channel was hung up."""
    assert tracker.errors == 0
    state: dict[str, list[str]] = defaultdict(list)
    for ev in out:
        assert ev["event"] in ("newCall", "answer", "hangup"), ev
        assert ev.get("callId"), ev
        assert ev.get("direction") in ("in", "out"), ev
        assert ev.get("from") and ev.get("to"), ev
        seen = state[str(ev["callId"])]
        if ev["event"] == "newCall":
            assert not seen, f"second newCall or newCall after {seen}: {ev}"
        else:
            assert seen[:1] == ["newCall"], f"{ev['event']} before newCall: {ev}"
            assert "hangup" not in seen, f"{ev['event']} after hangup: {ev}"
        seen.append(str(ev["event"]))
    if drained:
        assert tracker.calls == {}
        assert tracker.channels == {}
        for seen in state.values():
            assert seen[-1] == "hangup", seen


def by_call(out: list[CtiEvent]) -> dict[str, list[CtiEvent]]:
    calls: dict[str, list[CtiEvent]] = defaultdict(list)
    for ev in out:
        calls[str(ev["callId"])].append(ev)
    return dict(calls)


def interleave(data: st.DataObject, traces: list[Trace]) -> list[dict[str, str]]:
    """A random merge of ``traces`` that keeps each trace's own order.

    One drawn Random drives the merge: a draw per event made these tests several times slower.
    """
    rnd = data.draw(st.randoms(use_true_random=False), label="merge order")
    # Each slot names the trace that supplies the next event; shuffling slots keeps order.
    slots = [i for i, t in enumerate(traces) for _ in t]
    rnd.shuffle(slots)
    its = [iter(t) for t in traces]
    return [next(its[i]) for i in slots]


# --------------------------------------------------------------------------- whole traces


def test_every_trace_keeps_the_invariants(corpus: Corpus) -> None:
    # The baseline the mangled streams below are measured against.
    for name, trace, rules in corpus.all():
        out, tracker = run(trace, rules)
        try:
            check_stream(out, tracker)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


# --------------------------------------------------------------------------- mid-call attach


@SETTINGS
@given(data=st.data())
def test_attaching_mid_call(corpus: Corpus, data: st.DataObject) -> None:
    _, trace, rules = data.draw(st.sampled_from(corpus.all()), label="trace")
    cut = data.draw(st.integers(0, len(trace)), label="cut")
    out, tracker = run(trace[cut:], rules)
    check_stream(out, tracker)


# --------------------------------------------------------------------------- duplicates


@SETTINGS
@given(data=st.data())
def test_duplicated_events(corpus: Corpus, data: st.DataObject) -> None:
    _, trace, rules = data.draw(st.sampled_from(corpus.all()), label="trace")
    dup = data.draw(
        st.sets(st.integers(0, len(trace) - 1), min_size=1, max_size=max(1, len(trace) // 4)),
        label="duplicated",
    )
    times = data.draw(st.integers(2, 3), label="times")
    stream = [ev for i, ev in enumerate(trace) for _ in range(times if i in dup else 1)]
    out, tracker = run(stream, rules)
    check_stream(out, tracker)


@SETTINGS
@given(data=st.data())
def test_late_duplicates(corpus: Corpus, data: st.DataObject) -> None:
    # A repeated event arriving later than its original (a second AMI session, a proxy
    # replaying its buffer): it must not revive a finished call or post anything twice.
    _, trace, rules = data.draw(st.sampled_from(corpus.all()), label="trace")
    stream = list(trace)
    for _ in range(data.draw(st.integers(1, 8), label="repeats")):
        src = data.draw(st.integers(0, len(trace) - 1), label="event")
        dst = data.draw(st.integers(src + 1, len(stream)), label="to")
        stream.insert(dst, trace[src])
    out, tracker = run(stream, rules)
    check_stream(out, tracker)


def test_every_event_doubled(corpus: Corpus) -> None:
    # The extreme case of the above: a proxy or a second login delivering everything twice
    # must give exactly the outcome of the clean stream.
    for name, trace, rules in corpus.all():
        out, tracker = run([ev for ev in trace for _ in (0, 1)], rules)
        check_stream(out, tracker)
        assert out == run(trace, rules)[0], name


# --------------------------------------------------------------------------- concurrency


@SETTINGS
@given(data=st.data())
def test_interleaved_lab_traces_keep_their_own_outcome(corpus: Corpus, data: st.DataObject) -> None:
    names = data.draw(
        st.lists(st.sampled_from(sorted(corpus.lab)), min_size=2, max_size=4), label="traces"
    )
    # The same recording may be drawn twice: its own tag keeps the copies apart.
    traces = [[relabel(ev, tag) for ev in corpus.lab[n]] for tag, n in enumerate(names)]
    out, tracker = run(interleave(data, traces), LAB_RULES)
    check_stream(out, tracker)
    merged = by_call(out)
    alone: dict[str, list[CtiEvent]] = {}
    for trace in traces:
        solo, _ = run(trace, LAB_RULES)
        alone.update(by_call(solo))
    assert merged == alone


@SETTINGS
@given(data=st.data())
def test_interleaved_cacofonisk_traces(corpus: Corpus, data: st.DataObject) -> None:
    system = data.draw(st.sampled_from(sorted(corpus.caco_systems)), label="system")
    files = corpus.caco_systems[system]
    names = data.draw(
        st.lists(st.sampled_from(files), min_size=2, max_size=min(4, len(files)), unique=True),
        label="traces",
    )
    out, tracker = run(interleave(data, [corpus.caco[n] for n in names]), CACO_RULES)
    check_stream(out, tracker)


@SETTINGS
@given(data=st.data())
def test_interleaved_cut_and_duplicated(corpus: Corpus, data: st.DataObject) -> None:
    # All three at once: a reconnect into a busy lab PBX whose proxy repeats events.
    names = data.draw(
        st.lists(st.sampled_from(sorted(corpus.lab)), min_size=2, max_size=4), label="traces"
    )
    traces = []
    for tag, n in enumerate(names):
        trace = [relabel(ev, tag) for ev in corpus.lab[n]]
        cut = data.draw(st.integers(0, len(trace)), label=f"cut {n}")
        dup = data.draw(st.sets(st.integers(0, len(trace) - 1), max_size=8), label=f"dup {n}")
        traces.append([ev for i, ev in enumerate(trace) if i >= cut for _ in range(1 + (i in dup))])
    out, tracker = run(interleave(data, traces), LAB_RULES)
    check_stream(out, tracker)


def test_relabel_keeps_relations(corpus: Corpus) -> None:
    # The interleaving tests rely on this: ids change, the call structure does not.
    trace = corpus.lab["pjsip_in_group_answered"]
    a = [relabel(ev, 3) for ev in trace]
    assert not {e.get("Uniqueid") for e in a} & {e.get("Uniqueid") for e in trace} - {None}
    out, _ = run(trace, LAB_RULES)
    out3, _ = run(a, LAB_RULES)
    assert [json.dumps({**e, "callId": ""}) for e in out] == [
        json.dumps({**e, "callId": ""}) for e in out3
    ]
    assert {e["callId"] for e in out3} == {"t3-" + str(e["callId"]) for e in out}

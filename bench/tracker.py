"""Call tracker throughput and memory: the lab corpus replayed as >= 1,000,000 AMI events.

The twelve lab-pjsip recordings (every event kept: VarSet, Newexten, TestEvent,
DeviceStateChange...) are repeated with distinct ids per copy (tests/support/relabel.py), built
as dicts in memory first; only ``CallTracker.feed`` is timed, on one core. Two streams:
  (a) unfiltered: everything Asterisk sends without an AMI event filter,
  (b) filtered: only DEFAULT_WANTED_EVENTS, what the lean AMI protocol hands to the tracker.
Prints events/s, CTI events produced, RSS before/after/peak, and what is left in the tracker
(must be 0 calls and 0 channels once every call has ended). Figures only, no asserts.

Usage: .venv/bin/python bench/tracker.py [--events N] [--rounds R] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cti_bridge.ami.protocol import DEFAULT_WANTED_EVENTS  # noqa: E402
from cti_bridge.calls.trace import read_trace  # noqa: E402
from cti_bridge.calls.tracker import CallRules, CallTracker  # noqa: E402
from tests.calls.test_corpus import LAB_RULES  # noqa: E402
from tests.support.relabel import relabel  # noqa: E402

CORPUS = Path(os.environ.get("CTI_BRIDGE_CORPUS", ROOT.parent / "shared" / "corpus"))
TARGET = 200_000  # AMI events/s on one core

Stream = list[dict[str, str]]


def load_lab() -> Stream:
    paths = sorted((CORPUS / "lab-pjsip").glob("*.jsonl"))
    if not paths:
        sys.exit(f"no lab-pjsip traces under {CORPUS}")
    return [ev for p in paths for ev in read_trace(p)]


def build(base: Stream, min_events: int) -> Stream:
    copies = -(-min_events // len(base))
    return [relabel(ev, tag) for tag in range(copies) for ev in base]


def rss_mib() -> float:
    """Current resident set size (Linux /proc), MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def replay(stream: Stream, rules: CallRules) -> tuple[float, float, int, CallTracker]:
    """Feed the stream; returns (CPU seconds, wall seconds, CTI events, tracker).

    CPU time of this process is the figure that counts: on a shared host the wall clock also
    measures the neighbours.
    """
    tracker = CallTracker(rules)
    feed = tracker.feed
    produced = 0
    c0, t0 = time.process_time(), time.perf_counter()
    for ev in stream:
        produced += len(feed(ev))
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    produced += len(tracker.flush())
    return cpu, wall, produced, tracker


def measure(label: str, stream: Stream, raw_count: int, rounds: int) -> float:
    gc.collect()
    before = rss_mib()
    best, best_wall = float("inf"), float("inf")
    produced = 0
    tracker = CallTracker(LAB_RULES)
    for _ in range(rounds):
        cpu, wall, produced, tracker = replay(stream, LAB_RULES)
        best, best_wall = min(best, cpu), min(best_wall, wall)
    gc.collect()
    after = rss_mib()
    print(
        f"\n[{label}] {len(stream):,} events fed, best of {rounds}: "
        f"{best:.2f} s CPU ({best_wall:.2f} s wall)"
    )
    print(
        f"  tracker events/s      {len(stream) / best:12,.0f} CPU"
        f"   {len(stream) / best_wall:,.0f} wall"
    )
    print(
        f"  AMI events/s (equiv.) {raw_count / best:12,.0f} CPU"
        f"   (unfiltered stream: {raw_count:,})"
    )
    print(f"  CTI events produced   {produced:12,}")
    print(f"  events handled        {tracker.events_seen:12,}   errors {tracker.errors}")
    print(f"  left: calls {len(tracker.calls)}, channels {len(tracker.channels)}", end="")
    print("".join(f", {name} {size}" for name, size in tracker.residue().items()))
    print(f"  RSS before {before:.1f} MiB, after {after:.1f} MiB ({after - before:+.1f} MiB)")
    print(f"  peak RSS so far {peak_mib():.1f} MiB (includes the pre-built events)")
    return raw_count / best


def profile(stream: Stream, top: int = 20) -> None:
    prof = cProfile.Profile()
    tracker = CallTracker(LAB_RULES)
    prof.enable()
    for ev in stream:
        tracker.feed(ev)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    print(buf.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="cProfile the filtered stream")
    args = ap.parse_args()

    print(f"python {sys.version.split()[0]}, pid {os.getpid()}, RSS at start {rss_mib():.1f} MiB")
    base = load_lab()
    t0 = time.perf_counter()
    full = build(base, args.events)
    wanted = [ev for ev in full if ev.get("Event") in DEFAULT_WANTED_EVENTS]
    copies = len(full) // len(base)
    print(
        f"built {len(full):,} events ({copies} copies of {len(base)}), {len(wanted):,} wanted "
        f"({len(wanted) / len(full):.0%}), in {time.perf_counter() - t0:.1f} s; "
        f"RSS {rss_mib():.1f} MiB"
    )
    raw = measure("unfiltered", full, len(full), args.rounds)
    filtered = measure("filtered (DEFAULT_WANTED_EVENTS)", wanted, len(full), args.rounds)
    for label, rate in (("unfiltered", raw), ("filtered", filtered)):
        verdict = "meets" if rate >= TARGET else "MISSES"
        print(f"{label}: {rate:,.0f} AMI events/s {verdict} the {TARGET:,}/s target")
    if args.profile:
        print("\ncProfile, filtered stream (first 200,000 events), by own time:")
        profile(wanted[:200_000])


if __name__ == "__main__":
    main()

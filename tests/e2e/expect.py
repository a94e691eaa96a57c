"""What the fake Zammad stored, and exact comparisons against expected CTI events.

An expected event lists the fields that matter, as EXPECTED.json of the lab corpus does: a
field not listed is free; a field given as None must be absent or empty (e.g. no ``user`` on an
outbound answer).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from cti_bridge.demo.zammad import CallLog, FakeZammad, Request

Expected = dict[str, Any]


def calls_in_order(z: FakeZammad) -> list[CallLog]:
    """Stored calls in the order of their first stored request."""
    first: dict[str, int] = {}
    for i, req in enumerate(z.requests):
        cid = req.get("callId")
        if cid is not None and cid not in first and req.status == 200:
            first[cid] = i
    calls = z.calls()
    return sorted(calls.values(), key=lambda c: first.get(c.call_id, 1 << 30))


def wait_quiet(z: FakeZammad, quiet: float = 1.0, timeout: float = 20.0) -> None:
    """Until no request has come for ``quiet`` seconds (catches late and duplicate posts)."""
    deadline = time.monotonic() + timeout
    seen = len(z.requests)
    last_change = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        n = len(z.requests)
        if n != seen:
            seen, last_change = n, time.monotonic()
        elif time.monotonic() - last_change >= quiet:
            return


def wait_hangups(z: FakeZammad, count: int, timeout: float = 30.0) -> list[CallLog]:
    """Until ``count`` calls have a stored hangup, then until quiet; the calls in order."""

    def done(f: FakeZammad) -> bool:
        return sum(1 for c in f.calls().values() if "hangup" in f.stored(c.call_id)) >= count

    z.wait_for(done, timeout)
    wait_quiet(z)
    return calls_in_order(z)


def describe(z: FakeZammad) -> str:
    lines = []
    for req in z.requests:
        fields = ", ".join(f"{k}={v}" for k, v in req.fields if k != "callId")
        lines.append(f"  {req.status} {req.get('callId')}: {fields} {req.fault or ''}")
    return "requests Zammad received:\n" + "\n".join(lines)


def _matches(event: dict[str, Any], expected: Expected) -> list[str]:
    problems = []
    for key, want in expected.items():
        got = event.get(key)
        if want is None:
            if got not in (None, "", []):
                problems.append(f"{key}: expected absent, got {got!r}")
        elif key.endswith("[]"):
            got_list = got if isinstance(got, list) else ([] if got is None else [got])
            if got_list != list(want):
                problems.append(f"{key}: expected {want!r}, got {got_list!r}")
        elif got != want:
            problems.append(f"{key}: expected {want!r}, got {got!r}")
    return problems


def assert_call(z: FakeZammad, call: CallLog, expected: list[Expected]) -> None:
    """The events Zammad stored for ``call`` are exactly ``expected`` (names in order, fields)."""
    got_names = [e.get("event") for e in call.events]
    want_names = [e["event"] for e in expected]
    problems = []
    if got_names != want_names:
        problems.append(f"events: expected {want_names}, got {got_names}")
    else:
        for i, (ev, exp) in enumerate(zip(call.events, expected, strict=True)):
            problems += [f"#{i} {exp['event']} {p}" for p in _matches(ev, exp)]
    assert not problems, "\n".join(problems) + "\n" + describe(z)


def assert_calls(
    z: FakeZammad,
    calls: list[CallLog],
    expected: list[list[Expected]],
    *,
    allow_refused_newcall: bool = False,
) -> None:
    assert len(calls) == len(expected), (
        f"expected {len(expected)} calls in Zammad, got {len(calls)}\n{describe(z)}"
    )
    for call, exp in zip(calls, expected, strict=True):
        assert_call(z, call, exp)
    assert_once(z, allow_refused_newcall=allow_refused_newcall)


def expect_calls(
    z: FakeZammad, expected: list[list[Expected]], timeout: float = 30.0
) -> list[CallLog]:
    """Wait for as many finished calls as expected, check them in order; the calls."""
    calls = wait_hangups(z, len(expected), timeout)
    assert_calls(z, calls, expected)
    return calls


def assert_once(z: FakeZammad, *, allow_refused_newcall: bool = False) -> None:
    """Every event stored once: no duplicate accepted, and no request refused.

    ``allow_refused_newcall`` tolerates a repeated newCall that Zammad refused as already
    existing (stored once all the same): the daemon's way to make a newCall retry idempotent
    when it cannot know whether an earlier try was stored.
    """
    accepted = Counter(
        (r.get("callId"), r.get("event")) for r in z.requests if r.status == 200 and r.fault is None
    )
    dups = {k: n for k, n in accepted.items() if n > 1}

    def tolerated(r: Request) -> bool:
        return (
            allow_refused_newcall
            and r.get("event") == "newCall"
            and b"already exists" in r.response
            and accepted[(r.get("callId"), "newCall")] == 1
        )

    def with_token(r: Request) -> bool:  # a test may post with a wrong token on purpose
        return r.path.split("?")[0].endswith("/" + z.token)

    refused = [
        r
        for r in z.requests
        if r.status >= 400 and r.fault is None and with_token(r) and not tolerated(r)
    ]
    refusals = [(r.status, r.response[:80]) for r in refused]
    assert not dups and not refused, f"duplicates {dups}, refused {refusals}\n{describe(z)}"


def new_call(frm: str, to: str, direction: str, **fields: Any) -> Expected:
    return {"event": "newCall", "from": frm, "to": to, "direction": direction, **fields}


def answer(direction: str, **fields: Any) -> Expected:
    return {"event": "answer", "direction": direction, **fields}


def hangup(direction: str, cause: str) -> Expected:
    return {"event": "hangup", "direction": direction, "cause": cause}

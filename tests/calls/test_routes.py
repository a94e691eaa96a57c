"""Routes in the call model: a pure matcher, decided with the newCall, on every later event."""

from __future__ import annotations

from pathlib import Path

import pytest

from cti_bridge.calls.rules import RouteFacts, RouteRule, route_matcher
from cti_bridge.calls.trace import read_trace
from cti_bridge.calls.tracker import CallRules, CallTracker
from cti_bridge.config import NumbersConfig
from cti_bridge.events import form_items

ROUTES = (
    RouteRule("did", to=("4930555100",)),
    RouteRule("queue", queue=("help*",)),
    RouteRule("tenant", context=("from-acme",), endpoint=("acme-*",)),
    RouteRule("phones", endpoint=("alice", "bob")),
)
route = route_matcher(ROUTES)


@pytest.mark.parametrize(
    ("facts", "name"),
    [
        (RouteFacts(inbound=True, to="4930555100"), "did"),
        (RouteFacts(inbound=True, to="4930555101", did="4930555100"), "did"),  # as dialled
        (RouteFacts(inbound=False, to="4930555100"), ""),  # to: inbound DIDs only
        (RouteFacts(inbound=True, to="4930555100", queue="helpdesk"), "did"),  # first wins
        (RouteFacts(inbound=True, to="4930555200", queue="helpdesk"), "queue"),
        (RouteFacts(inbound=False, context="from-acme", endpoint="acme-201"), "tenant"),
        (RouteFacts(inbound=False, context="from-acme", endpoint="other"), ""),  # all keys
        (RouteFacts(inbound=False, context="from-internal", endpoint="alice"), "phones"),
        (RouteFacts(inbound=True), ""),
    ],
)
def test_first_route_whose_every_key_matches(facts: RouteFacts, name: str) -> None:
    assert route(facts) == name


def lab(corpus: Path, name: str) -> list[dict[str, str]]:
    return list(read_trace(corpus / "lab-pjsip" / f"{name}.jsonl"))


def test_did_matches_the_number_as_posted_and_as_dialled(corpus_dir: Path) -> None:
    events = lab(corpus_dir, "pjsip_in_group_answered")
    national = [
        {**e, "Exten": "030555100"} if e.get("Exten") == "4930555100" else e for e in events
    ]
    for rules in (
        CallRules(numbers=NumbersConfig(region="DE"), routes=(RouteRule("a", to=("4930*",)),)),
        CallRules(routes=(RouteRule("a", to=("030555100",)),)),
    ):
        out = CallTracker(rules).feed_many(national)
        assert [e.get("_route") for e in out] == ["a", "a", "a"], rules


def test_every_event_of_a_call_carries_its_route_and_it_is_never_posted(
    corpus_dir: Path,
) -> None:
    events = lab(corpus_dir, "pjsip_out_answered")
    rules = CallRules(
        trunk_endpoints=("carrier",), routes=(RouteRule("o", context=("from-int*",)),)
    )
    out = CallTracker(rules).feed_many(events)
    assert [e["event"] for e in out] == ["newCall", "answer", "hangup"]
    assert {e["_route"] for e in out} == {"o"}
    assert all(k != "_route" for e in out for k, _ in form_items(e))
    # Without routes the events are exactly as before: no _route at all.
    plain = CallTracker(CallRules(trunk_endpoints=("carrier",))).feed_many(events)
    assert plain == [{k: v for k, v in e.items() if k != "_route"} for e in out]


def test_a_queue_known_only_after_the_newcall_does_not_move_the_call(corpus_dir: Path) -> None:
    events = lab(corpus_dir, "pjsip_in_queue_answered")
    join = next(i for i, e in enumerate(events) if e["Event"] == "QueueCallerJoin")
    rules = CallRules(
        trunk_endpoints=("carrier",),
        routes=(RouteRule("helpdesk", queue=("helpdesk",)), RouteRule("did", to=("4930*",))),
    )
    tracker = CallTracker(rules)
    out = tracker.feed_many(events[:join])
    out += tracker.tick(10.0)  # the held newCall goes out before the queue is known
    out += tracker.feed_many(events[join:])
    assert [e["event"] for e in out] == ["newCall", "answer", "hangup"]
    assert {e["_route"] for e in out} == {"did"}
    # Known in time, the queue decides.
    out = CallTracker(rules).feed_many(events)
    assert {e["_route"] for e in out} == {"helpdesk"}


def test_the_hook_newcall_is_routed_and_its_call_keeps_the_route(corpus_dir: Path) -> None:
    events = lab(corpus_dir, "pjsip_in_group_answered")
    root = events[2]
    tracker = CallTracker(
        CallRules(trunk_endpoints=("carrier",), routes=(RouteRule("t", endpoint=("carrier",)),))
    )
    tracker.feed(root)
    hook = tracker.agi_newcall(
        channel=root["Channel"],
        linkedid=root["Linkedid"],
        callerid=root["CallerIDNum"],
        context="macro-sub",  # a subroutine's context: the first channel's is used
        to=root["Exten"],
    )
    assert hook is not None and hook["_route"] == "t"
    rest = tracker.feed_many(events[3:])
    assert [e["event"] for e in rest] == ["answer", "hangup"]
    assert {e["_route"] for e in rest} == {"t"}


def test_restored_calls_keep_their_route() -> None:
    tracker = CallTracker(CallRules())
    newcall = {"event": "newCall", "from": "1", "to": "2", "direction": "in", "callId": "c1"}
    tracker.restore([({**newcall, "_route": "acme"}, False)])
    out = tracker.resync([])
    assert [(e["event"], e.get("_route")) for e in out] == [("hangup", "acme")]

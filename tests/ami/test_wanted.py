"""The AMI filter is derived from what the call model and the client read."""

from __future__ import annotations

from cti_bridge.ami import protocol
from cti_bridge.ami.wanted import CLIENT_EVENTS, WANTED_EVENTS
from cti_bridge.calls import HANDLED_EVENTS
from cti_bridge.calls.tracker import HANDLERS, CallTracker


def test_wanted_events_are_the_handled_ones_plus_the_clients() -> None:
    assert WANTED_EVENTS == HANDLED_EVENTS | CLIENT_EVENTS
    assert "FullyBooted" in WANTED_EVENTS
    # Answers to actions never go through the event filter: they are not listed.
    assert not {e for e in WANTED_EVENTS if e.startswith("CoreShowChannel")}
    assert protocol.DEFAULT_WANTED_EVENTS == WANTED_EVENTS


def test_every_handled_event_reaches_a_handler() -> None:
    tracker = CallTracker()
    for name, handler in HANDLERS.items():
        assert callable(tracker._handlers[name]), name
        assert handler.method.startswith("on_"), name
    before = tracker.events_seen
    for name in sorted(HANDLED_EVENTS):
        tracker.feed({"Event": name})
    assert tracker.events_seen - before == len(HANDLED_EVENTS)
    assert tracker.errors == 0


def test_an_unread_event_is_not_counted() -> None:
    tracker = CallTracker()
    assert tracker.feed({"Event": "BridgeCreate", "BridgeUniqueid": "b"}) == []
    assert tracker.events_seen == 0

"""The channel graph alone: Local pairs, bridges, the devices_of walk, the gone memory."""

from __future__ import annotations

from cti_bridge.calls.graph import GONE_MEMORY, ChannelGraph
from cti_bridge.calls.model import Channel


def graph_with(*names: str) -> tuple[ChannelGraph, list[Channel]]:
    graph = ChannelGraph(lambda: 1.0)
    call = graph.new_call("1.0")
    chans = [Channel(f"1.{i}", name, call) for i, name in enumerate(names)]
    for ch in chans:
        graph.add(ch)
    return graph, chans


def test_local_halves_pair_by_name() -> None:
    graph, (one, two) = graph_with("Local/100@ctx-0001;1", "Local/100@ctx-0001;2")
    assert one.peer is two and two.peer is one and two.parent is one
    assert graph.local_wait == {}


def test_devices_of_follows_local_hops() -> None:
    graph, (caller, one, two, phone) = graph_with(
        "PJSIP/carrier-01", "Local/100@ctx-0001;1", "Local/100@ctx-0001;2", "PJSIP/100-02"
    )
    graph.enter(caller, "b1", None)
    graph.enter(one, "b1", None)
    assert graph.devices_of(caller) == []
    graph.enter(two, "b2", None)
    graph.enter(phone, "b2", None)
    assert graph.devices_of(caller) == [phone]
    graph.leave(phone)
    assert graph.devices_of(caller) == []


def test_swap_replaces_a_member() -> None:
    graph, (a, b, c) = graph_with("PJSIP/a-01", "PJSIP/b-02", "PJSIP/c-03")
    graph.enter(a, "b1", None)
    graph.enter(b, "b1", None)
    assert graph.enter(c, "b1", b.uid) == {a.uid, c.uid}


def test_removed_channels_are_remembered_within_bounds() -> None:
    graph, chans = graph_with(*(f"PJSIP/p-{i:06x}" for i in range(GONE_MEMORY + 1)))
    first = chans[0]
    assert graph.remove(first.uid) is first
    assert first.uid in graph.gone and first.uid not in first.call.channels
    assert graph.remove(first.uid) is None
    for ch in chans[1:]:
        graph.remove(ch.uid)
    assert len(graph.gone) == GONE_MEMORY and first.uid not in graph.gone


def test_forget_leaves_nothing_behind() -> None:
    graph, (a, _one) = graph_with("PJSIP/a-01", "Local/1@c-0001;1")
    graph.enter(a, "b1", None)
    graph.forget(a.call)
    assert (graph.channels, graph.calls, graph.linked, graph.bridges, graph.local_wait) == (
        {},
        {},
        {},
        {},
        {},
    )

"""Several Zammads on the real pbx: each DID's calls reach its own Zammad, an outage of one
delays nothing of the other, and a reject from one applies only to its own calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cti_bridge.demo.zammad import FakeZammad

from .conftest import DaemonFactory
from .expect import answer, expect_calls, hangup, new_call
from .lab import Daemon, Lab

pytestmark = pytest.mark.e2e

FIRST_DID, SECOND_DID = "4930555300", "4930555100"
BLOCKED = "491710000077"


def routes(first: FakeZammad, second: FakeZammad) -> str:
    return (
        f'\n[[route]]\nname = "first"\nurl = {json.dumps(first.url())}\nto = ["{FIRST_DID}"]\n'
        f'\n[[route]]\nname = "second"\nurl = {json.dumps(second.url())}\nto = ["{SECOND_DID}"]\n'
    )


@pytest.fixture
def first() -> Iterator[FakeZammad]:
    with FakeZammad("first-token", blocked=(BLOCKED,)) as z:
        yield z


@pytest.fixture
def second() -> Iterator[FakeZammad]:
    with FakeZammad("second-token") as z:
        yield z


def alice_answers(caller: str, did: str) -> list[dict[str, object]]:
    """The events of a call to ``did`` that Alice answers."""
    return [
        new_call(caller, did, "in"),
        answer("in", user="Alice Agent", answeringNumber="101"),
        hangup("in", "normalClearing"),
    ]


@dataclass
class Tenants:
    lab: Lab
    daemon: Daemon
    zammad: FakeZammad  # [zammad]: gets nothing, both DIDs are routed
    first: FakeZammad
    second: FakeZammad


@pytest.fixture
def tenants(
    clean_lab: Lab,
    start_daemon: DaemonFactory,
    zammad: FakeZammad,
    first: FakeZammad,
    second: FakeZammad,
) -> Tenants:
    """The daemon with DID 4930555300 routed to ``first``, 4930555100 to ``second``; Alice
    answers, Bob only rings."""
    clean_lab.set_mode("alice", "answer")
    clean_lab.set_mode("bob", "ring")
    daemon = start_daemon(zammad, extra_config=routes(first, second))
    return Tenants(clean_lab, daemon, zammad, first, second)


def test_one_zammad_down_delays_nothing_of_the_other(tenants: Tenants) -> None:
    lab, first, second = tenants.lab, tenants.first, tenants.second
    first.down()
    h1 = lab.call(FIRST_DID, "491710000071", talk=1)
    assert lab.originate_response(h1)["Response"] == "Success"  # the hook did not wait
    lab.wait_idle()
    h2 = lab.call(SECOND_DID, "491710000072", talk=1)
    assert lab.originate_response(h2)["Response"] == "Success"
    expect_calls(second, [alice_answers("491710000072", SECOND_DID)])
    assert first.requests == []  # still down: its call waits in its own lane
    doc = tenants.daemon.wait_status(
        lambda d: {r["name"]: r for r in d["routes"]}["first"]["pending"] == 3
    )
    lanes = {r["name"]: r for r in doc["routes"]}
    assert lanes["first"]["state"] == "down" and lanes["second"]["state"] == "ok"
    assert "first-token" not in json.dumps(doc) and "second-token" not in json.dumps(doc)
    first.up()
    expect_calls(first, [alice_answers("491710000071", FIRST_DID)])
    assert tenants.zammad.requests == []


def test_a_reject_from_the_first_applies_only_to_its_own_calls(tenants: Tenants) -> None:
    lab, first, second = tenants.lab, tenants.first, tenants.second
    h1 = lab.call(FIRST_DID, BLOCKED)
    assert lab.originate_response(h1)["Response"] == "Failure"
    (result,) = lab.dial_results(h1.mark)
    assert (result["DialStatus"], result["Cause"]) == ("BUSY", "17")
    assert lab.arrivals(h1.mark) == []
    lab.wait_idle()
    # The same caller to the other tenant's DID rings through: its Zammad blocks nobody.
    h2 = lab.call(SECOND_DID, BLOCKED, talk=1)
    assert lab.originate_response(h2)["Response"] == "Success"
    expect_calls(first, [[new_call(BLOCKED, FIRST_DID, "in"), hangup("in", "busy")]])
    expect_calls(second, [alice_answers(BLOCKED, SECOND_DID)])
    assert tenants.zammad.requests == []

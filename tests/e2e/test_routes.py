"""Several Zammads on the real pbx: each DID's calls reach its own Zammad, an outage of one
delays nothing of the other, and a reject from one applies only to its own calls."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.fake_zammad import FakeZammad

from .conftest import DaemonFactory
from .expect import answer, expect_calls, hangup, new_call
from .lab import Lab

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


def alice_answers(caller: str) -> list[dict[str, object]]:
    return [
        new_call(caller, FIRST_DID, "in"),
        answer("in", user="Alice Agent", answeringNumber="101"),
        hangup("in", "normalClearing"),
    ]


def test_one_zammad_down_delays_nothing_of_the_other(
    clean_lab: Lab,
    start_daemon: DaemonFactory,
    zammad: FakeZammad,
    first: FakeZammad,
    second: FakeZammad,
) -> None:
    clean_lab.set_mode("alice", "answer")
    clean_lab.set_mode("bob", "ring")
    daemon = start_daemon(zammad, extra=routes(first, second))
    first.down()
    h1 = clean_lab.call(FIRST_DID, "491710000071", talk=1)
    assert clean_lab.originate_response(h1)["Response"] == "Success"  # the hook did not wait
    clean_lab.wait_idle()
    h2 = clean_lab.call(SECOND_DID, "491710000072", talk=1)
    assert clean_lab.originate_response(h2)["Response"] == "Success"
    expect_calls(
        second,
        [
            [
                new_call("491710000072", SECOND_DID, "in"),
                answer("in", user="Alice Agent", answeringNumber="101"),
                hangup("in", "normalClearing"),
            ]
        ],
    )
    assert first.requests == []  # still down: its call waits in its own lane
    doc = daemon.wait_status(lambda d: {r["name"]: r for r in d["routes"]}["first"]["pending"] == 3)
    lanes = {r["name"]: r for r in doc["routes"]}
    assert lanes["first"]["state"] == "down" and lanes["second"]["state"] == "ok"
    assert "first-token" not in json.dumps(doc) and "second-token" not in json.dumps(doc)
    first.up()
    expect_calls(first, [alice_answers("491710000071")])
    assert zammad.requests == []  # [zammad] got nothing: both DIDs are routed


def test_a_reject_from_the_first_applies_only_to_its_own_calls(
    clean_lab: Lab,
    start_daemon: DaemonFactory,
    zammad: FakeZammad,
    first: FakeZammad,
    second: FakeZammad,
) -> None:
    clean_lab.set_mode("alice", "answer")
    clean_lab.set_mode("bob", "ring")
    start_daemon(zammad, extra=routes(first, second))
    h1 = clean_lab.call(FIRST_DID, BLOCKED)
    assert clean_lab.originate_response(h1)["Response"] == "Failure"
    (result,) = clean_lab.dial_results(h1.mark)
    assert (result["DialStatus"], result["Cause"]) == ("BUSY", "17")
    assert clean_lab.arrivals(h1.mark) == []
    clean_lab.wait_idle()
    # The same caller to the other tenant's DID rings through: its Zammad blocks nobody.
    h2 = clean_lab.call(SECOND_DID, BLOCKED, talk=1)
    assert clean_lab.originate_response(h2)["Response"] == "Success"
    expect_calls(first, [[new_call(BLOCKED, FIRST_DID, "in"), hangup("in", "busy")]])
    expect_calls(
        second,
        [
            [
                new_call(BLOCKED, SECOND_DID, "in"),
                answer("in", user="Alice Agent", answeringNumber="101"),
                hangup("in", "normalClearing"),
            ]
        ],
    )
    assert zammad.requests == []

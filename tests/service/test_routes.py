"""Several Zammads: the daemon with [[route]]s, fake AMI, real FastAGI client, fake Zammads.

Four fake Zammads on loopback: ``[zammad]`` (up), ``acme`` routed by DID (up), ``helpdesk``
routed by queue (down, then back), ``sales`` routed by the context of the call's first
channel (refusing the token, then accepting it again). Lab traces drive the calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from cti_bridge.config import parse_config
from cti_bridge.demo.zammad import FakeZammad
from cti_bridge.outbox.admin import list_rows
from cti_bridge.service.status import format_status
from tests.agi.test_server import agi_call, make_env
from tests.service.test_daemon import (
    BLOCKED,
    _reply,
    expected_for,
    lab,
    make_config,
    running,
    same_events,
    stored_fields,
    until,
)
from tests.support.fake_ami import FakeAmi

ACME_DID = "4930555100"
MAIN_DID = "4930555300"
# Which trace goes where: acme by DID, helpdesk by queue name, sales by the context of the
# first channel (outbound calls from the phones), [zammad] the rest (DID 4930555300).
TRACES = {
    "acme": ["pjsip_in_group_answered", "pjsip_in_no_answer"],
    "helpdesk": ["pjsip_in_queue_answered", "pjsip_in_queue_abandoned"],
    "sales": ["pjsip_out_busy", "pjsip_out_answered"],
    "main": ["pjsip_in_anonymous"],
}


def routes_config(fakes: dict[str, FakeZammad]) -> list[dict[str, Any]]:
    return [
        {"name": "acme", "url": fakes["acme"].url(), "to": [ACME_DID]},
        {"name": "helpdesk", "url": fakes["helpdesk"].url(), "queue": ["help*"]},
        {"name": "sales", "url": fakes["sales"].url(), "context": ["from-internal"]},
    ]


@contextmanager
def four_zammads(**kw: Any) -> Iterator[dict[str, FakeZammad]]:
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(FakeZammad(f"tok-{name}", **kw.get(name, {})))
            for name in ("main", "acme", "helpdesk", "sales")
        }


def all_stored(fake: FakeZammad, calls: dict[str, list[Any]]) -> Callable[[], bool]:
    """A test that ``fake`` stored as many events as ``calls`` have."""
    n = sum(map(len, calls.values()))
    return lambda: fake.stored_count() == n


def no_route_field_posted(fakes: dict[str, FakeZammad]) -> None:
    for fake in fakes.values():
        for req in fake.requests:
            assert not any(k.startswith("_") for k, _ in req.fields), req.fields


async def test_each_tenant_gets_its_calls_and_an_outage_delays_no_other(
    tmp_path: Path, corpus_dir: Path
) -> None:
    traces = {name: [ev for t in ts for ev in lab(corpus_dir, t)] for name, ts in TRACES.items()}
    expected = {name: expected_for(evs) for name, evs in traces.items()}
    async with FakeAmi() as ami:
        with four_zammads() as fakes:
            data = make_config(tmp_path, ami, fakes["main"].url(), zammad={})
            data["zammad"]["config_retry_interval"] = 0.3
            data["route"] = routes_config(fakes)
            data["agi"] = {"listen": ""}
            cfg = parse_config(data)
            fakes["helpdesk"].down()  # down: not listening
            fakes["sales"].token = "another"  # refuses our token: 401
            async with running(cfg) as daemon:
                await ami.wait_login()
                for name in ("helpdesk", "sales", "acme", "main"):  # the stuck ones first
                    for ev in traces[name]:
                        await ami.send_event(ev)
                # The healthy tenants get every event although two others are stuck.
                for name in ("acme", "main"):
                    await until(all_stored(fakes[name], expected[name]))
                    assert set(fakes[name].calls()) == set(expected[name])  # nothing crossed
                await until(lambda: daemon.routes.by_name["sales"].delivery.state == "rejected")
                await until(lambda: daemon.routes.by_name["helpdesk"].delivery.state == "down")
                doc = daemon.snapshot()
                by_name = {r["name"]: r for r in doc["routes"]}
                assert [r["name"] for r in doc["routes"]] == [
                    "default",
                    "acme",
                    "helpdesk",
                    "sales",
                ]
                waiting = {n: sum(map(len, expected[n].values())) for n in ("helpdesk", "sales")}
                assert by_name["helpdesk"]["pending"] == waiting["helpdesk"]
                assert by_name["sales"]["pending"] == waiting["sales"]
                assert by_name["acme"]["pending"] == 0 and by_name["acme"]["state"] == "ok"
                text = json.dumps(doc) + format_status(doc)
                assert "tok-" not in text and "another" not in text
                assert "Route    sales: rejected" in format_status(doc)
                # outbox list --route: only that lane's rows, in order.
                listing = list_rows(
                    cfg.outbox.path,
                    dead=False,
                    limit=50,
                    route="helpdesk",
                    routes=["acme", "helpdesk", "sales"],
                )
                assert listing.startswith(f"{waiting['helpdesk']} pending event(s) of route")
                assert all(" helpdesk " in line for line in listing.splitlines()[1:])
                # Back: their calls arrive, each in order, and nothing is lost.
                fakes["helpdesk"].up()
                fakes["sales"].token = "tok-sales"
                for name in ("helpdesk", "sales"):
                    await until(all_stored(fakes[name], expected[name]), timeout=15)
            for name, calls in expected.items():
                assert set(fakes[name].calls()) == set(calls), name
                for call_id, want in calls.items():
                    same_events(stored_fields(fakes[name], call_id), want)
            no_route_field_posted(fakes)


async def test_a_reject_from_one_tenant_applies_only_to_its_own_calls(tmp_path: Path) -> None:
    async with FakeAmi() as ami:
        with four_zammads(acme={"blocked": (BLOCKED,)}) as fakes:
            data = make_config(tmp_path, ami, fakes["main"].url())
            data["route"] = routes_config(fakes)
            cfg = parse_config(data)
            async with running(cfg) as daemon:
                await ami.wait_login()
                assert daemon.agi is not None
                answers = {}
                for did, linkedid in ((ACME_DID, "1700000001.1"), (MAIN_DID, "1700000002.1")):
                    env = make_env(
                        agi_channel=f"PJSIP/carrier-{linkedid[-3:]}",
                        agi_uniqueid=linkedid,
                        agi_callerid=BLOCKED,
                        agi_calleridname="",
                        agi_context="from-trunk",
                        agi_extension=did,
                        agi_dnid=did,
                    )
                    answers[did] = await agi_call(daemon.agi, env, reply=_reply(linkedid))
                assert "EXEC Hangup 17" in answers[ACME_DID]
                assert "EXEC Hangup 17" not in answers[MAIN_DID]
                assert any(c.startswith("SET VARIABLE CTI_ACTION none") for c in answers[MAIN_DID])
                # Each hook's newCall went to its own tenant's Zammad only.
                assert fakes["acme"].stored("1700000001.1") == ["newCall"]
                assert fakes["main"].stored("1700000002.1") == ["newCall"]
                assert not fakes["main"].stored("1700000001.1")
                assert not fakes["acme"].stored("1700000002.1")
            no_route_field_posted(fakes)


async def test_without_a_zammad_url_unrouted_calls_are_logged_not_posted(
    tmp_path: Path, corpus_dir: Path, caplog: Any
) -> None:
    acme = lab(corpus_dir, "pjsip_in_group_answered")
    other = lab(corpus_dir, "pjsip_in_anonymous")
    async with FakeAmi() as ami:
        with four_zammads() as fakes:
            data = make_config(tmp_path, ami, "")
            del data["zammad"]["url"]
            data["route"] = routes_config(fakes)[:1]
            data["agi"] = {"listen": ""}
            cfg = parse_config(data)
            async with running(cfg) as daemon:
                await ami.wait_login()
                for ev in [*other, *acme]:
                    await ami.send_event(ev)
                await until(lambda: fakes["acme"].stored_count() == 3)
                await until(lambda: daemon.snapshot()["outbox"]["unrouted"] == 1)
                doc = daemon.snapshot()
                assert doc["zammad"]["state"] == "off"
                assert doc["outbox"]["pending"] == 0
                assert "not posted" in format_status(doc)
    other_id = other[2]["Linkedid"]
    lines = [r.message for r in caplog.records if other_id in r.message]
    assert len(lines) == 1 and "matches no [[route]]" in lines[0]


async def test_check_asks_every_route_s_zammad(tmp_path: Path) -> None:
    from cti_bridge.service.checks import run_checks

    async with FakeAmi() as ami:
        with four_zammads() as fakes:
            data = make_config(tmp_path, ami, fakes["main"].url())
            data["route"] = routes_config(fakes)
            fakes["sales"].token = "another"
            results = {name: ok for name, ok, _ in await run_checks(parse_config(data))}
    assert results["Zammad endpoint and token"] is True
    assert results["Zammad endpoint and token of route acme"] is True
    assert results["Zammad endpoint and token of route sales"] is False

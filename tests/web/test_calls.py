"""/calls on a real daemon (fake AMI, fake Zammad, real HTTP): the page, its live stream, and
the dry run that posts nothing."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx

from cti_bridge.config import parse_config
from cti_bridge.demo.zammad import FakeZammad
from cti_bridge.service.daemon import Daemon
from cti_bridge.service.recent import RecentCalls
from cti_bridge.service.status import format_status
from cti_bridge.web.calls import render_page, stream
from tests.service.test_daemon import lab, make_config, until
from tests.support.fake_ami import FakeAmi
from tests.web.test_listener import bridge

TRACE = "pjsip_in_group_answered"  # 491710000001 -> 4930555100, Alice Agent answers


def settled(daemon: Daemon) -> bool:
    rows = daemon.snapshot()["recent_calls"]
    return bool(rows) and rows[0]["state"] == "hangup" and rows[0]["delivery"] != "waiting"


async def test_the_page_lists_the_call_with_zammads_columns(tmp_path: Path, corpus_dir: Path):
    async with bridge(tmp_path) as (daemon, ami, client):
        for ev in lab(corpus_dir, TRACE):
            await ami.send_event(ev)
        await until(lambda: settled(daemon))
        r = await client.get("/calls")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        page = r.text
        for text in ("491710000001", "4930555100", "Alice Agent", "hangup", "normalClearing"):
            assert f"<td>{text}</td>" in page, text
        assert "<td>delivered</td>" in page
        for title in ("Direction", "Users", "Queue", "Waiting time", "Talking time", "Delivery"):
            assert f"<th>{title}</th>" in page
        # A strict CSP of the page's own: the inline script and style carry its nonce.
        csp = r.headers["content-security-policy"]
        nonce = re.search(r"script-src 'nonce-([^']+)'", csp)
        assert nonce is not None and "default-src 'none'" in csp
        assert page.count(f'nonce="{nonce.group(1)}"') == 2
        assert " src=" not in page and "href=" not in page  # no external asset
        assert "tok3n" not in page  # the Zammad token is nowhere
        assert (await client.post("/calls")).status_code == 405  # read-only


def test_the_page_escapes_what_it_shows() -> None:
    row: dict[str, Any] = {"from": "<script>alert(1)</script>", "users": ["a&b"]}
    page = render_page([row], "n0nce")
    assert "<script>alert(1)" not in page and "&lt;script&gt;" in page and "a&amp;b" in page


async def read_event(lines: Any) -> list[dict[str, Any]]:
    """The next ``data:`` event of the stream (keep-alive comments skipped)."""
    async for line in lines:
        if line.startswith("data: "):
            rows: list[dict[str, Any]] = json.loads(line[len("data: ") :])
            return rows
    raise AssertionError("stream ended")


async def test_the_stream_sends_each_change_and_ends_when_the_daemon_stops(
    tmp_path: Path, corpus_dir: Path
):
    async with (
        bridge(tmp_path) as (daemon, ami, client),
        client.stream("GET", "/calls/events") as r,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.aiter_lines()
        assert await read_event(lines) == []
        for ev in lab(corpus_dir, TRACE):
            await ami.send_event(ev)
        async with asyncio.timeout(15):
            rows = await read_event(lines)
            while rows[0]["state"] != "hangup" or rows[0]["delivery"] != "delivered":
                rows = await read_event(lines)
        assert (rows[0]["from"], rows[0]["users"]) == ("491710000001", ["Alice Agent"])
        daemon._stop.set()
        async with asyncio.timeout(10):  # the stream ends: it is not cut at the grace
            rest = [line async for line in lines]
        assert all(not line.startswith("data: ") or "491710000001" in line for line in rest)


async def test_dry_run_posts_nothing_queues_nothing_and_shows_the_calls(
    tmp_path: Path, corpus_dir: Path
):
    async with FakeAmi() as ami:
        with FakeZammad() as zammad:
            cfg = parse_config(
                make_config(tmp_path, ami, zammad.url(), web={"listen": "127.0.0.1:0"})
            )
            daemon = Daemon(cfg, dry_run=True)
            task = asyncio.ensure_future(daemon.run())
            try:
                await ami.wait_login()
                for ev in lab(corpus_dir, TRACE):
                    await ami.send_event(ev)
                await until(lambda: settled(daemon))
                doc = daemon.snapshot()
                assert daemon.web is not None
                async with httpx.AsyncClient(base_url=daemon.web.url) as client:
                    page = (await client.get("/calls")).text
                    assert (await client.get("/metrics")).status_code == 200
            finally:
                daemon._stop.set()
                await asyncio.wait_for(task, 15)
            assert zammad.requests == []
    (row,) = doc["recent_calls"]
    assert (row["from"], row["state"], row["delivery"]) == ("491710000001", "hangup", "dry run")
    assert doc["dry_run"] is True and doc["zammad"]["would_post"] == 3
    assert "<td>dry run</td>" in page
    assert "dry run: nothing posted; 3 event(s) would have been" in format_status(doc)
    assert not Path(cfg.outbox.path).exists()  # the outbox file is not even created


async def test_an_idle_stream_sends_keep_alives_and_ends_at_close() -> None:
    recent = RecentCalls()
    events = stream(recent, keepalive=0.01)
    assert await anext(events) == "data: []\n\n"
    assert await anext(events) == ": keep-alive\n\n"
    recent.close()
    assert [e async for e in events] == []

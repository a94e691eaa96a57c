"""The ping watchdog: half-open links and unanswered logins are dropped, floods are not."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.ami_client import running
from tests.support.fake_ami import FakeAmi, Recorder, marker_event

pytestmark = pytest.mark.timeout(30)


async def test_half_open_connection_is_detected_and_reconnected(server: FakeAmi) -> None:
    rec = Recorder()
    async with running(server, rec) as client:
        assert await client.wait_logged_in(5)
        server.stalled = True
        await rec.wait(lambda: not client.connected)
        assert client.last_error is not None and "ping timeout" in client.last_error
        server.stalled = False
        await server.wait_login(2)
        assert await client.wait_logged_in(5)
        await server.send_raw(marker_event("after"))
        await rec.wait_marker("after")
        assert client.reconnects == 1


async def test_unanswered_login_is_dropped_and_retried(server: FakeAmi) -> None:
    server.stalled = True  # banner, then silence
    async with running(server) as client:
        await server.wait_for(lambda: client.last_error == "AMI login not answered")
        assert not client.connected and not client.login_failed
        server.stalled = False
        assert await client.wait_logged_in(5)


async def test_unanswered_pings_during_a_flood_do_not_drop_the_link(server: FakeAmi) -> None:
    """A Pong queued behind a flood of events is late, not lost: the link stays up."""
    rec = Recorder()
    dispatch = server._dispatch

    async def no_pong(client: Any, headers: list[tuple[str, str]]) -> bool:
        if any(k.lower() == "action" and v.lower() == "ping" for k, v in headers):
            return True  # swallowed: as if queued behind the events
        return await dispatch(client, headers)

    server._dispatch = no_pong  # type: ignore[method-assign]
    async with running(server, rec, ping_timeout=0.3) as client:
        assert await client.wait_logged_in(5)
        for i in range(40):  # 2 s of events, several ping timeouts long
            await server.send_event({"Event": "Newchannel", "Uniqueid": f"f{i}"})
            await asyncio.sleep(0.05)
        assert client.connected and client.reconnects == 0
        # Once the events stop too, the link is taken for dead and re-opened.
        await rec.wait(lambda: not client.connected or client.reconnects > 0)

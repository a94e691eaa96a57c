"""Staged CTI events: one commit per loop pass, held and retried while the outbox fails."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from cti_bridge.events import CtiEvent
from cti_bridge.service.staging import StagedEvents


class FakeOutbox:
    def __init__(self) -> None:
        self.commits: list[list[CtiEvent]] = []
        self.failing = False

    def submit(self, events: list[CtiEvent]) -> None:
        if self.failing:
            raise sqlite3.OperationalError("database is locked")
        self.commits.append(list(events))


def ev(n: int) -> CtiEvent:
    return {"event": "newCall", "callId": str(n)}


async def test_events_of_one_pass_are_one_commit() -> None:
    outbox = FakeOutbox()
    staged = StagedEvents(outbox.submit)
    staged.stage([ev(1)])
    staged.stage([ev(2), ev(3)])
    assert outbox.commits == [] and len(staged) == 3
    await asyncio.sleep(0)
    assert outbox.commits == [[ev(1), ev(2), ev(3)]] and len(staged) == 0


async def test_dispatch_commits_behind_what_is_staged() -> None:
    outbox = FakeOutbox()
    staged = StagedEvents(outbox.submit)
    staged.stage([ev(1)])
    staged.dispatch([ev(2)])
    assert outbox.commits == [[ev(1), ev(2)]]
    await asyncio.sleep(0)  # the scheduled commit finds nothing left
    assert len(outbox.commits) == 1


async def test_unwritable_outbox_holds_in_order_and_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox = FakeOutbox()
    outbox.failing = True
    staged = StagedEvents(outbox.submit, retry=0.01, limit=3)
    staged.dispatch([ev(1), ev(2)])
    staged.stage([ev(3), ev(4)])  # no extra commit while a retry is armed
    await asyncio.sleep(0.05)
    assert outbox.commits == [] and len(staged) == 3  # the oldest went over the limit
    assert "dropped from memory" in caplog.text
    assert caplog.text.count("cannot write") == 1  # said once, not per retry
    outbox.failing = False
    await asyncio.sleep(0.05)
    assert outbox.commits == [[ev(2), ev(3), ev(4)]]
    assert "outbox writable again" in caplog.text


async def test_close_reports_what_the_outbox_still_refuses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox = FakeOutbox()
    outbox.failing = True
    staged = StagedEvents(outbox.submit, retry=60)
    staged.stage([ev(1)])
    staged.close([ev(2)])
    assert "at exit: 2 CTI event(s) lost" in caplog.text

"""Acks ride in the next outbox commit, and a failed commit keeps them due."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from cti_bridge.demo.zammad import call_events
from cti_bridge.outbox.store import Outbox
from cti_bridge.zammad.acks import AckBatch


async def test_acks_ride_in_the_next_put_or_are_flushed_at_the_end_of_the_pass(
    tmp_path: Path,
) -> None:
    with Outbox(tmp_path / "o.sqlite3") as ob:
        acks = AckBatch(ob)
        first = ob.put_many(call_events("a"))
        acks.add(first[0])
        acks.add(first[1])
        assert len(acks) == 2 and ob.count() == 3
        acks.put_many(call_events("b"))  # one transaction: 2 acks out, 3 events in
        assert len(acks) == 0 and ob.count() == 4
        acks.add(first[2])
        await asyncio.sleep(0)  # the end of this loop pass
        assert len(acks) == 0 and ob.count() == 3


async def test_a_failed_commit_keeps_the_acks_due(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ob = Outbox(tmp_path / "o.sqlite3")
    acks = AckBatch(ob)
    (rid,) = ob.put_many(call_events("a")[:1])
    acks.add(rid)
    ob.close()
    acks.flush()  # the outbox is gone: logged, kept
    assert len(acks) == 1
    assert "cannot record 1 delivered event(s)" in caplog.text
    with pytest.raises(sqlite3.Error):
        acks.put_many(call_events("b"))
    assert len(acks) == 1

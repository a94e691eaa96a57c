"""Answers for the FastAGI hook (waiters) and the AMI-only rejects (watches)."""

from __future__ import annotations

import asyncio

from cti_bridge.zammad import NO_ACTION, ZammadAnswer
from cti_bridge.zammad.waiters import AnswerWaiters

REJECT = ZammadAnswer("reject", reason="busy")


async def test_a_waiter_gets_the_answer_or_none() -> None:
    w = AnswerWaiters()
    task = asyncio.create_task(w.wait(1, timeout=5))
    await asyncio.sleep(0)
    w.resolve(1, REJECT)
    assert await task == REJECT
    assert await w.wait(2, timeout=0.01) is None  # never answered
    task = asyncio.create_task(w.wait(3, timeout=5))
    await asyncio.sleep(0)
    w.close()
    assert await task is None


async def test_watches_fire_in_time_only_and_expired_ones_are_pruned() -> None:
    w = AnswerWaiters()
    seen: list[tuple[int, str]] = []
    w.watch(1, lambda a: seen.append((1, a.action)), 5.0, pending=True)
    w.watch(2, lambda a: seen.append((2, a.action)), 0.0, pending=True)
    w.watch(3, lambda a: seen.append((3, a.action)), 5.0, pending=False)  # already delivered
    assert w.watching == 2
    await asyncio.sleep(0.01)
    w.resolve(1, REJECT)
    w.resolve(2, REJECT)  # too late
    w.resolve(3, REJECT)
    assert seen == [(1, "reject")]
    w.watch(4, lambda a: seen.append((4, a.action)), 5.0, pending=True)
    w.resolve(4, None)  # dead-lettered: no answer to apply
    assert seen == [(1, "reject")] and w.watching == 0


async def test_a_failing_watch_does_not_break_the_others() -> None:
    w = AnswerWaiters()

    def boom(answer: ZammadAnswer) -> None:
        raise RuntimeError("bug")

    w.watch(1, boom, 5.0, pending=True)
    w.resolve(1, NO_ACTION)  # logged, not raised
    assert w.watching == 0

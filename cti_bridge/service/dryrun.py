"""``cti-bridge run --dry-run``: everything but the POSTs, for a real PBX before Zammad is wired.

:class:`DryRunRoutes` stands in for :class:`~cti_bridge.zammad.routes.Routes` (one
:class:`DryRunDelivery` whatever the ``[[route]]`` tables say): the events the
tracker produces go to the caller log (``/calls``, ``cti-bridge status``) marked "dry run", and
nowhere else. Nothing is written to the outbox, so a later real run cannot post the dry run's
calls; and every answer is "none" at once, so the FastAGI hook lets each call through
unchanged without waiting for anybody.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from cti_bridge.events import DEFAULT_ROUTE, CtiEvent
from cti_bridge.service.recent import RecentCalls
from cti_bridge.zammad.answers import ZammadAnswer
from cti_bridge.zammad.health import State
from cti_bridge.zammad.waiters import Watch

DRY_RUN = "dry-run"


class DryRunDelivery:
    """The subset of Delivery's API the daemon uses; records, never posts."""

    def __init__(self, journal: RecentCalls) -> None:
        self._journal = journal
        self._ids = itertools.count(1)
        self.would_post = 0

    @property
    def state(self) -> State:
        return State.OK  # nothing to be unhealthy about: no request is ever made

    async def start(self) -> None:
        return None

    async def stop(self, grace: float = 5.0) -> None:
        return None

    def submit_many(self, events: Iterable[CtiEvent]) -> list[int]:
        batch = list(events)
        ids = [next(self._ids) for _ in batch]
        self._journal.committed(ids, batch, dry=True)
        self.would_post += len(batch)
        return ids

    def watch_answer(self, rid: int, callback: Watch, timeout: float) -> None:
        return None  # no answer ever comes: the call goes on unchanged

    async def submit_and_wait(self, event: CtiEvent, timeout: float) -> ZammadAnswer | None:
        self.submit_many([event])
        return None

    def status(self) -> dict[str, Any]:
        return {
            "state": DRY_RUN,
            "dry_run": True,
            "would_post": self.would_post,
            "posted": 0,
            "pending": 0,
            "dead": 0,
            "oldest_age_s": None,
        }


class DryRunRoutes:
    """The part of :class:`~cti_bridge.zammad.routes.Routes` the daemon uses, for a dry run:
    every event goes to one :class:`DryRunDelivery`, whatever its route."""

    def __init__(self, journal: RecentCalls) -> None:
        self.delivery = DryRunDelivery(journal)
        self.unrouted = 0

    def __iter__(self) -> Iterator[Any]:
        return iter(())  # no Zammad is reached

    async def start(self) -> None:
        await self.delivery.start()

    async def stop(self, grace: float) -> None:
        await self.delivery.stop(grace)

    async def aclose(self) -> None:
        return None

    def submit_many(self, events: list[CtiEvent]) -> list[int | None]:
        return list(self.delivery.submit_many(events))

    def watch_answer(self, event: CtiEvent, rid: int, callback: Watch, timeout: float) -> None:
        return None  # no answer ever comes: the call goes on unchanged

    async def submit_and_wait(self, event: CtiEvent, timeout: float) -> ZammadAnswer | None:
        return await self.delivery.submit_and_wait(event, timeout)

    def status(self) -> list[dict[str, Any]]:
        return [{"name": DEFAULT_ROUTE, "url": None, **self.delivery.status()}]

    def summary(self) -> str:
        return "dry run, nothing posted"

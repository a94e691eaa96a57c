"""Several Zammads: one delivery lane per route, none able to delay another.

Each ``[[route]]``, and ``[zammad]`` as the route ``default``, gets its own :class:`Delivery`
over its own lane of the one outbox (:meth:`Outbox.lane`), with its own :class:`ZammadClient`:
its own health gate (down / refusing the token), tenacity backoff, workers (the in-flight
limit, ``[zammad] concurrency``) and answer waiters. A Zammad that is down or refuses the token
stops only its own lane. What the routes share is the file and one batch of acks, so the acks
of every route still ride in the next commit of any route.

A call's route is fixed by the call model when its newCall is decided and travels on every
event as ``_route`` (never posted). Rows of a route no longer configured go to ``default``.
Without a ``[zammad] url`` the calls that match no route are logged, once each, and not posted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any

from cti_bridge.config import Config, ZammadConfig
from cti_bridge.events import DEFAULT_ROUTE, CtiEvent, call_id, route_of
from cti_bridge.outbox.store import Outbox
from cti_bridge.zammad.acks import AckBatch
from cti_bridge.zammad.answers import ZammadAnswer
from cti_bridge.zammad.client import ZammadClient
from cti_bridge.zammad.delivery import Delivery, Journal
from cti_bridge.zammad.health import State
from cti_bridge.zammad.waiters import Watch

log = logging.getLogger(__name__)

RouteObserver = Callable[[str, str, str, float], None]
"""``observer(route, event_name, result, latency_s)``."""


@dataclasses.dataclass(frozen=True)
class Route:
    """One Zammad and what delivers to it."""

    name: str
    cfg: ZammadConfig
    client: ZammadClient
    delivery: Delivery


class Routes:
    """The routes of one daemon, by name; ``default`` (``[zammad]``) first when it has a URL."""

    def __init__(
        self,
        outbox: Outbox,
        cfg: Config,
        *,
        observer: RouteObserver | None = None,
        on_state: Callable[[State], None] | None = None,
        journal: Journal | None = None,
    ) -> None:
        self._acks = AckBatch(outbox)
        self._outbox = outbox
        self._names = names = [r.name for r in cfg.route]
        targets: list[tuple[str, ZammadConfig, Outbox]] = []
        if cfg.zammad.url.get():
            lane = outbox.lane(DEFAULT_ROUTE, others=names) if names else outbox
            targets.append((DEFAULT_ROUTE, cfg.zammad, lane))
        for r in cfg.route:
            targets.append(
                (r.name, dataclasses.replace(cfg.zammad, url=r.url), outbox.lane(r.name))
            )
        self.by_name: dict[str, Route] = {}
        for i, (name, zcfg, lane) in enumerate(targets):
            client = ZammadClient(zcfg)
            delivery = Delivery(
                lane,
                client,
                zcfg,
                observer=_for_route(observer, name),
                on_state=on_state,
                acks=self._acks,
                checkpoints=i == 0,  # one WAL checkpointer for the shared file
                journal=journal,
            )
            self.by_name[name] = Route(name, zcfg, client, delivery)
        self._unrouted = 0

    def __iter__(self) -> Iterator[Route]:
        return iter(self.by_name.values())

    def route_for(self, event: CtiEvent) -> Route | None:
        """The event's route; ``default`` for a name not configured; None: not to be posted."""
        return self.by_name.get(route_of(event) or DEFAULT_ROUTE) or self.by_name.get(DEFAULT_ROUTE)

    # -- the Delivery API, per route ---------------------------------------------------------

    async def start(self) -> None:
        for route in self.by_name.values():
            await route.delivery.start()
        if DEFAULT_ROUTE not in self.by_name:
            stranded = self._outbox.lane(DEFAULT_ROUTE, others=self._names).count()
            if stranded:
                log.warning(
                    "%d event(s) in the outbox belong to [zammad] or to a route no longer "
                    "configured, and [zammad] has no url: they stay there "
                    "(cti-bridge outbox list --route default)",
                    stranded,
                )

    async def stop(self, grace: float) -> None:
        await asyncio.gather(*(r.delivery.stop(grace) for r in self.by_name.values()))

    async def aclose(self) -> None:
        await asyncio.gather(*(r.client.aclose() for r in self.by_name.values()))

    def submit_many(self, events: list[CtiEvent]) -> list[int | None]:
        """Commit each route's events (one transaction per route in the batch); the outbox ids
        in event order, None for an event no route takes."""
        groups: dict[str, list[int]] = {}
        ids: list[int | None] = [None] * len(events)
        for i, ev in enumerate(events):
            route = self.route_for(ev)
            if route is None:
                self._not_posted(ev)
            else:
                groups.setdefault(route.name, []).append(i)
        for name, idx in groups.items():
            rids = self.by_name[name].delivery.submit_many(events[i] for i in idx)
            for i, rid in zip(idx, rids, strict=True):
                ids[i] = rid
        return ids

    def watch_answer(self, event: CtiEvent, rid: int, callback: Watch, timeout: float) -> None:
        route = self.route_for(event)
        if route is not None:
            route.delivery.watch_answer(rid, callback, timeout)

    async def submit_and_wait(self, event: CtiEvent, timeout: float) -> ZammadAnswer | None:
        """The FastAGI hook's newCall, asked of its own route's Zammad only."""
        route = self.route_for(event)
        if route is None:
            self._not_posted(event)
            return None
        return await route.delivery.submit_and_wait(event, timeout)

    def _not_posted(self, event: CtiEvent) -> None:
        if event.get("event") == "newCall":  # once per call
            self._unrouted += 1
            log.warning(
                "call %s matches no [[route]] and [zammad] has no url: not posted",
                call_id(event),
            )

    # -- state -------------------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """Each route's delivery status, with its name (the URL's token redacted)."""
        return [{"name": r.name, **r.delivery.status()} for r in self.by_name.values()]

    @property
    def unrouted(self) -> int:
        """Calls that matched no route while ``[zammad]`` has no URL (not posted)."""
        return self._unrouted

    def summary(self) -> str:
        """``ok`` with one route; ``default ok, acme down`` with several."""
        routes = list(self.by_name.values())
        if len(routes) == 1 and routes[0].name == DEFAULT_ROUTE:
            return str(routes[0].delivery.state)
        return ", ".join(f"{r.name} {r.delivery.state}" for r in routes) or "off"


def _for_route(
    observer: RouteObserver | None, name: str
) -> Callable[[str, str, float], None] | None:
    if observer is None:
        return None

    def observe(event: str, result: str, latency: float) -> None:
        observer(name, event, result, latency)

    return observe

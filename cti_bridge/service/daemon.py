"""Wiring and lifecycle of ``cti-bridge run``.

Data flows one way: AMI -> tracker -> outbox -> Zammad. Zammad's decisions come back only
through the FastAGI hook (and, best effort, as an AMI Hangup for calls without the hook:
docs/asterisk-ami.md#11-acting-on-a-call-ami-is-too-late-fastagi-is-in-time). The AMI callback
is synchronous and cheap: it feeds the pure tracker and stages what comes out
(:mod:`cti_bridge.service.staging` commits it once per AMI read). Every other producer (resync,
the tracker's timer, FastAGI) commits the staged events first, so a call's events keep their
order.

Nothing polls. The tracker's time-driven work (releasing a held newCall, closing a call that
went silent) runs from one ``loop.call_at`` timer, armed at ``CallTracker.next_deadline()``
after every change and not armed at all when no call is open; the sd_notify STATUS line is
refreshed when something it shows changes. An idle daemon wakes only for the AMI keepalive
ping, the systemd watchdog ping and delivery's outbox look-up (``cti-bridge outbox retry``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
from collections.abc import Mapping
from typing import Any

from cti_bridge import __version__
from cti_bridge.agi.decide import NONE, AgiDecision, decision_for
from cti_bridge.agi.server import AgiServer
from cti_bridge.agi.wire import AgiRequest
from cti_bridge.ami.client import AmiClient
from cti_bridge.calls.tracker import IN, CallRules, CallTracker
from cti_bridge.causes import Q850
from cti_bridge.config import Config
from cti_bridge.dial import DialService, dial_routes
from cti_bridge.events import DEFAULT_ROUTE, CtiEvent
from cti_bridge.numbers import NumberPlan
from cti_bridge.outbox.store import Outbox
from cti_bridge.outbox.upgrade import adopt_old_outbox
from cti_bridge.service.dryrun import DryRunRoutes
from cti_bridge.service.metrics import Metrics
from cti_bridge.service.readiness import Readiness
from cti_bridge.service.recent import RecentCalls
from cti_bridge.service.sdnotify import Notifier
from cti_bridge.service.staging import StagedEvents
from cti_bridge.service.status import StatusServer
from cti_bridge.web import DaemonView, WebServer, create_app
from cti_bridge.web.calls import calls_routes
from cti_bridge.zammad import ZammadAnswer
from cti_bridge.zammad.routes import Routes

log = logging.getLogger("cti_bridge")

STOP_GRACE = 5.0
# The "zammad" status of a daemon whose [zammad] has no URL (every call goes by [[route]]).
_NO_ZAMMAD: Mapping[str, Any] = {"state": "off", "url": None}


class Daemon:
    """One running bridge: owns every component and their order of start and stop.

    ``dry_run``: nothing is posted and nothing queued; the outbox is a private in-memory one
    (the outbox file is not even opened) and :class:`DryRunRoutes` takes the routes' place.
    """

    def __init__(self, cfg: Config, *, dry_run: bool = False) -> None:
        self.cfg = cfg
        self.dry_run = dry_run
        self.started = time.time()
        self.tracker = CallTracker(CallRules.from_config(cfg), clock=time.monotonic)
        self.recent = RecentCalls()
        if dry_run:  # a private in-memory outbox: the real file is not even opened
            self.outbox = Outbox(":memory:", background_checkpoint=True)
        else:
            adopt_old_outbox(cfg.outbox.path)  # before opening: an empty file would strand the old
            self.outbox = Outbox(cfg.outbox.path, background_checkpoint=True)
        self.metrics: Metrics | None = Metrics(self.snapshot) if cfg.web.listen else None
        # One delivery lane per Zammad ([zammad] and each [[route]]): see zammad/routes.py.
        self.routes: Routes | DryRunRoutes = (
            DryRunRoutes(self.recent)
            if dry_run
            else Routes(
                self.outbox,
                cfg,
                observer=self.metrics.observe_route_post if self.metrics else None,
                on_state=lambda _state: self.readiness.update(),
                journal=self.recent,
            )
        )
        self.ami = AmiClient(
            cfg.ami, self._on_ami_event, on_resync=self._on_resync, on_state=self._on_ami_state
        )
        self.agi = AgiServer(cfg.agi, self._decide) if cfg.agi.listen else None
        self.numbers = NumberPlan(cfg.numbers)  # Zammad's caller ID on its way to Asterisk
        self.dial: DialService | None = None
        if cfg.dial.enabled:
            self.dial = DialService(
                cfg.dial,
                self.numbers,
                serial=self.outbox.dial_serial,
                originate=self.ami.originate,
                clock=time.monotonic,
            )
        self.web: WebServer | None = None
        if self.metrics is not None:
            view = DaemonView(self.snapshot, self.metrics.registry, self.health)
            web_routes = [*calls_routes(self.recent)]
            if self.dial is not None:
                web_routes += dial_routes(self.dial)
            self.web = WebServer(cfg.web, create_app(view, web_routes))
        self.status_server = StatusServer(cfg.status.socket, self.snapshot)
        self.readiness = Readiness(Notifier.from_env(), self._status_line)
        self.staged = StagedEvents(self._submit)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._bg: set[asyncio.Task[Any]] = set()
        self._tick_timer: asyncio.TimerHandle | None = None
        self._rearm_due = False  # a _rearm is scheduled for this loop pass
        self._closing = False  # shutdown began: no more tracker timer
        self._resync_mark: int | None = None
        self._was_connected = False

    # ------------------------------------------------------------------ AMI -> tracker -> outbox

    def _on_ami_event(self, event: Mapping[str, str]) -> None:
        out = self.tracker.feed(event)
        if out:
            self.staged.stage(out)
        if not self._rearm_due:  # once per AMI read, not per event
            self._rearm_due = True
            asyncio.get_running_loop().call_soon(self._rearm)

    def _rearm(self) -> None:
        """Keep one timer at the tracker's next deadline; none when nothing is due."""
        self._rearm_due = False
        self.readiness.update()
        due = None if self._closing else self.tracker.next_deadline()
        timer = self._tick_timer
        if timer is not None:
            if due is not None and timer.when() <= due:
                return  # it fires first, and re-arms after its tick
            timer.cancel()
            self._tick_timer = None
        if due is not None:
            self._tick_timer = asyncio.get_running_loop().call_at(due, self._tick, due)

    def _tick(self, due: float) -> None:
        self._tick_timer = None
        # The loop may fire a timer a clock resolution early: the tick is at least ``due``.
        out = self.tracker.tick(max(time.monotonic(), due))
        if out:
            self.staged.dispatch(out)
        self._rearm()

    def _on_resync(self, channels: list[dict[str, str]]) -> None:
        out = self.tracker.resync(channels, since=self._resync_mark)
        log.info(
            "AMI resync: %d channel(s) on the PBX, %d call(s) tracked, %d event(s) from resync",
            len(channels),
            self.tracker.active_calls,
            len(out),
        )
        if out:
            self.staged.dispatch(out)
        self._rearm()

    def _submit(self, events: list[CtiEvent]) -> None:
        ids = self.routes.submit_many(events)
        for rid, ev in zip(ids, events, strict=True):
            name = ev.get("event")
            if name == "hangup":
                log.info(
                    "call %s %s from %s to %s: %s",
                    ev.get("callId"),
                    ev.get("direction"),
                    ev.get("from"),
                    ev.get("to"),
                    ev.get("cause"),
                )
            elif name == "newCall" and ev.get("direction") == IN and rid is not None:
                # Calls without the FastAGI hook: a reject can only be applied over AMI.
                self.routes.watch_answer(
                    ev, rid, functools.partial(self._on_answer, ev), max(self.cfg.agi.timeout, 5.0)
                )

    def _on_answer(self, event: CtiEvent, answer: ZammadAnswer) -> None:
        if answer.action == "reject":
            self._spawn(self._ami_reject(event))

    async def _ami_reject(self, event: CtiEvent) -> None:
        channel = self.tracker.root_channel(str(event.get("callId", "")))
        if channel is None:
            return
        ok = await self.ami.hangup(channel, Q850.USER_BUSY)
        log.info(
            "call %s: Zammad rejected the caller; AMI Hangup of %s %s (best effort, no AGI hook)",
            event.get("callId"),
            channel,
            "done" if ok else "failed",
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    # ------------------------------------------------------------------ FastAGI decisions

    async def _decide(self, request: AgiRequest) -> AgiDecision:
        event = self.tracker.agi_newcall(
            channel=request.channel,
            linkedid=request.linkedid,
            callerid=request.callerid,
            calleridname=request.calleridname,
            callingpres=request.callingpres,
            context=request.context,
            to=request.to,
            queue=request.queue,
        )
        self._rearm()
        if event is None:
            return NONE
        self.staged.commit()
        # The call's own route's Zammad decides, and only for this call.
        answer = await self.routes.submit_and_wait(event, self.cfg.agi.timeout)
        decision = decision_for(event, answer, self.numbers.caller_id)
        if decision.action == "reject":
            log.info("call %s: Zammad rejects caller %s", event["callId"], event["from"])
        elif decision.action == "dial":
            log.info("call %s: Zammad sets caller id %s", event["callId"], decision.caller_id)
        return decision

    # ------------------------------------------------------------------ state

    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        routes = self.routes.status()
        # "zammad": [zammad]'s lane as before; with routes, "routes" lists every lane.
        zammad = routes[0] if routes and routes[0]["name"] == DEFAULT_ROUTE else _NO_ZAMMAD
        return {
            "version": __version__,
            "uptime_s": round(now - self.started, 1),
            "ami": self.ami.snapshot(),
            "zammad": zammad,
            "routes": routes,
            "calls": {
                "active": self.tracker.active_calls,
                "channels": len(self.tracker.channels),
                "events_seen": self.tracker.events_seen,
                "tracker_errors": self.tracker.errors,
            },
            "outbox": {
                "path": "" if self.dry_run else self.cfg.outbox.path,
                "pending": sum(r["pending"] for r in routes),
                "oldest_age_s": max(
                    (r["oldest_age_s"] for r in routes if r["oldest_age_s"] is not None),
                    default=None,
                ),
                "dead": self.outbox.count_dead(),
                "unrouted": self.routes.unrouted,
            },
            "agi": self.agi.snapshot() if self.agi else {"enabled": False},
            "web": self.web.snapshot() if self.web else {"enabled": False},
            "dry_run": self.dry_run,
            "recent_calls": self.recent.rows(),
        }

    def health(self) -> dict[str, bool]:
        """/healthz: logged in to AMI, and the outbox took the last write (no write per probe)."""
        return {"ami": self.ami.connected, "outbox": not self.staged.failing}

    def _status_line(self) -> str:
        ami = (
            "AMI connected"
            if self.ami.connected
            else "AMI " + (self.ami.last_error or "disconnected")
        )
        return f"{ami}; Zammad {self.routes.summary()}; {self.tracker.active_calls} call(s)"

    def _on_ami_state(self) -> None:
        connected = self.ami.connected
        if connected and not self._was_connected:
            # Logged in: the resync listing is requested now; channels born later are newer.
            self._resync_mark = self.tracker.mark()
        self._was_connected = connected
        if connected:
            self.readiness.ready()
        self.readiness.update()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)
        log.info(
            "cti-bridge %s starting: AMI %s:%d, Zammad %s, AGI %s, outbox %s",
            __version__,
            self.cfg.ami.host,
            self.cfg.ami.port,
            ", ".join(f"{r.name} {r.cfg.display_url}" for r in self.routes)
            or ("none (dry run)" if self.dry_run else "off"),
            self.cfg.agi.listen or "off",
            "none (dry run: nothing is posted or queued)" if self.dry_run else self.cfg.outbox.path,
        )
        pending = self.outbox.count()
        if pending:
            log.info("outbox holds %d event(s) from before: delivering them first", pending)
        open_calls = self.outbox.open_calls()
        if open_calls:
            # Closed (hangup) at the first resync unless the PBX still lists them.
            log.info("%d call(s) were open when the bridge last stopped", len(open_calls))
            self.tracker.restore(open_calls)
        await self.routes.start()
        await self.status_server.start()
        if self.agi is not None:
            await self.agi.start()
        if self.web is not None:
            await self.web.start()
        self.readiness.start()
        await self.ami.start()
        self._rearm()  # calls restored from the outbox
        self._tasks = [asyncio.ensure_future(self.readiness.notifier.run_watchdog())]
        await self._stop.wait()
        await self.shutdown()
        return 0

    async def shutdown(self) -> None:
        log.info("stopping: no more AMI events; finishing posts in flight for %.0f s", STOP_GRACE)
        self.readiness.stop()
        self._closing = True
        if self._tick_timer is not None:
            self._tick_timer.cancel()
            self._tick_timer = None
        await self.ami.stop()
        if self.dial is not None:
            await self.dial.stop()
        if self.agi is not None:
            await self.agi.stop()
        self.staged.close(self.tracker.flush())
        for task in [*self._tasks, *self._bg]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._bg, return_exceptions=True)
        await self.routes.stop(STOP_GRACE)
        await self.routes.aclose()
        await self.status_server.stop()
        self.recent.close()  # live /calls streams end now, not at the web server's grace
        if self.web is not None:
            await self.web.stop()
        left = self.outbox.count()
        self.outbox.close()
        self.readiness.notifier.close()
        log.info("stopped; %d event(s) stay in the outbox for the next start", left)


async def run_daemon(cfg: Config, *, dry_run: bool = False) -> int:
    daemon = Daemon(cfg, dry_run=dry_run)
    return await daemon.run()

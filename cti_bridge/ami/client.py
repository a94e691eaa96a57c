"""The AMI side of the daemon: one panoramisk 1.4 Manager, hardened.

panoramisk keeps the TCP connection, the login and the action/response matching. Around it
(docs/asterisk-ami.md#13-panoramisk-14-bugs-the-client-works-around):

- events go through :mod:`cti_bridge.ami.protocol` (lean, bounded, UTF-8 safe) to ONE synchronous
  callback; an exception there is counted and logged, it never reaches panoramisk
  (docs/asterisk-ami.md#131-a-raising-callback-kills-the-connection) and order is kept
  (docs/asterisk-ami.md#132-coroutine-callbacks-lose-order-and-errors);
- :mod:`cti_bridge.ami.watchdog` pings and aborts a link whose Pong or login answer does not
  come back; the abort makes panoramisk reconnect by itself;
- ``connect()`` is called once: panoramisk already reschedules itself after a refused connect,
  a second retry loop would run parallel connections (:mod:`cti_bridge.ami.manager`);
- a refused login raises nothing in panoramisk
  (docs/asterisk-ami.md#136-a-refused-login-is-silent): the login answer is watched here,
  reported as "AMI login failed" and retried at a slow pace;
- every login lists the channels (:mod:`cti_bridge.ami.resync`) for ``on_resync``;
- actions still pending when the link drops are failed at once, and every action here runs
  under ``wait_for`` (docs/asterisk-ami.md#137-pending-actions-wait-for-fullybooted).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from panoramisk import Manager
from panoramisk.actions import Action
from panoramisk.message import Message

from cti_bridge.ami.checks import Result, check_ami
from cti_bridge.ami.manager import HardenedManager, LinkState
from cti_bridge.ami.originate import (
    ORIGINATE_RESPONSE,
    OriginateRequest,
    OriginateResult,
    PendingOriginates,
    originate,
)
from cti_bridge.ami.protocol import (
    DEFAULT_WANTED_EVENTS,
    Event,
    LeanAMIProtocol,
    ProtoStats,
    RateLimitedLog,
)
from cti_bridge.ami.resync import ChannelListing, OnResync
from cti_bridge.ami.sink import EventSink
from cti_bridge.ami.watchdog import PingWatchdog
from cti_bridge.causes import Q850
from cti_bridge.config import AmiConfig

__all__ = ["DEFAULT_WANTED_EVENTS", "AmiClient", "Event"]

log = logging.getLogger("cti_bridge.ami.client")

#: Pace of new attempts after a refused login: fixing manager.conf recovers without a restart,
#: without hammering Asterisk (which logs every failed login).
LOGIN_RETRY_INTERVAL = 30.0
#: panoramisk's own pinger is replaced by the watchdog; park it far in the future.
_NEVER = 10**9


class AmiClient:
    """Connection to one Asterisk manager interface, feeding one synchronous event callback."""

    def __init__(
        self,
        cfg: AmiConfig,
        on_event: Callable[[Event], None],
        *,
        on_resync: OnResync | None = None,
        on_state: Callable[[], None] | None = None,
        wanted_events: frozenset[str] | None = None,
        login_retry_interval: float = LOGIN_RETRY_INTERVAL,
        resync_timeout: float | None = None,
    ) -> None:
        self.cfg = cfg
        self._on_state = on_state
        self._wanted = DEFAULT_WANTED_EVENTS if wanted_events is None else wanted_events
        self._login_retry = login_retry_interval
        self.stats = ProtoStats()  # counters of every connection: they survive reconnects
        self._rlog = RateLimitedLog(log)
        self._on_event = on_event
        self.originates = PendingOriginates()
        self.sink = EventSink(self._route, self.stats, self._rlog)
        self._listing = ChannelListing(
            on_resync, self.stats, self._rlog, resync_timeout or max(cfg.ping_timeout, 10.0)
        )
        self._watchdog = PingWatchdog(self)
        self._mgr: HardenedManager | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._link = LinkState.STOPPED
        self._link_since: float | None = None  # monotonic time of the last state change
        self._logged_in = asyncio.Event()  # wakes wait_logged_in; binds to a loop lazily
        self._login_failed = False  # sticky until a login succeeds: the secret is wrong
        self._last_error: str | None = None
        self._reason: str | None = None  # why we dropped the link ourselves
        self._since: float | None = None
        self._logins = 0

    # -- public state -----------------------------------------------------------------------

    @property
    def link(self) -> LinkState:
        return self._link

    @property
    def link_since(self) -> float | None:
        """``time.monotonic()`` when the link entered its current state."""
        return self._link_since

    @property
    def manager(self) -> HardenedManager | None:
        return self._mgr

    @property
    def connected(self) -> bool:
        """Logged in (a TCP connection without a successful login does not count)."""
        return self._link is LinkState.LOGGED_IN

    @property
    def since(self) -> float | None:
        return self._since

    @property
    def login_failed(self) -> bool:
        return self._login_failed

    @property
    def last_error(self) -> str | None:
        return self._last_error

    @property
    def reconnects(self) -> int:
        """Successful logins after the first one."""
        return max(self._logins - 1, 0)

    def snapshot(self) -> dict[str, Any]:
        last = self.stats.last_event_at
        return {
            "connected": self.connected,
            "since": self._since,
            "last_event_age_s": None if last is None else round(time.time() - last, 3),
            "login_failed": self._login_failed,
            "last_error": self._last_error,
            "events_read": self.stats.events_read,
            "events_filtered": self.stats.events_filtered,
            "frames_malformed": self.stats.frames_malformed,
            "frames_oversized": self.stats.frames_oversized,
            "callback_errors": self.stats.callback_errors,
            "reconnects": self.reconnects,
        }

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Make the first connect attempt; login and retries continue in the background."""
        factory = functools.partial(
            LeanAMIProtocol,
            sink=self.sink,
            stats=self.stats,
            wanted=self._wanted,
            rlog=self._rlog,
        )
        self._mgr = HardenedManager(
            self._connect_failed,
            loop=asyncio.get_running_loop(),
            host=self.cfg.host,
            port=self.cfg.port,
            username=self.cfg.username,
            secret=self.cfg.secret.get(),
            events="on",
            protocol_factory=factory,
            ping_delay=_NEVER,
            ping_interval=_NEVER,
            reconnect_timeout=1,
            on_connect=self._on_connect,
            on_login=self._on_login,
            on_disconnect=self._on_disconnect,
            log=logging.getLogger("cti_bridge.ami.client.panoramisk"),
        )
        # panoramisk int()s its timers; the float interval is set after construction.
        self._mgr.reconnect_timeout = self.cfg.reconnect_interval
        self._set_link(LinkState.CONNECTING)
        self._watchdog.start()
        log.info("AMI connecting to %s:%d as %r", self.cfg.host, self.cfg.port, self.cfg.username)
        # A refusal is already recorded by _connect_failed and panoramisk retries by itself.
        with contextlib.suppress(OSError):
            await self._mgr.connect()

    async def stop(self) -> None:
        mgr = self._mgr
        if mgr is None:
            return
        mgr.stopped = True
        await self._watchdog.stop()
        for task in list(self._tasks):
            task.cancel()
        mgr.close()
        mgr.fail_pending()
        self._mgr = None
        self._set_link(LinkState.STOPPED)
        self._set_state()

    async def wait_logged_in(self, timeout: float, *, give_up_on_refusal: bool = False) -> bool:
        """Wait for a login; with ``give_up_on_refusal`` a refused login or connection ends it."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self.connected
            try:
                await asyncio.wait_for(self._logged_in.wait(), min(remaining, 0.1))
                return True
            except TimeoutError:
                # A refused login, or a refused connection, will not heal within a check.
                if give_up_on_refusal and (self._login_failed or self._last_error):
                    return False

    # -- actions ----------------------------------------------------------------------------

    async def hangup(self, channel: str, cause: int = Q850.USER_BUSY) -> bool:
        """AMI Hangup, True if Asterisk hung the channel up.

        Racy by nature: the channel may be gone or ringing phones already
        (docs/asterisk-ami.md#11-acting-on-a-call-ami-is-too-late-fastagi-is-in-time).
        """
        resp = await self.request(
            {"Action": "Hangup", "Channel": channel, "Cause": str(cause)}, self.cfg.ping_timeout
        )
        if not isinstance(resp, Message):
            log.warning("AMI Hangup of %s: no answer", channel)
            return False
        if not resp.success:
            log.info("AMI Hangup of %s refused: %s", channel, resp.get("Message", ""))
            return False
        return True

    async def originate(self, call: OriginateRequest) -> OriginateResult:
        """AMI Originate (Async): see :func:`cti_bridge.ami.originate.originate`."""
        return await originate(self.request, self.originates, call, self.cfg.ping_timeout)

    async def check(self, timeout: float) -> list[Result]:
        """Checks for ``cti-bridge check``: (name, ok, detail), in order of dependency."""
        return await check_ami(self, timeout)

    async def request(
        self, fields: dict[str, str], timeout: float, as_list: bool | None = None
    ) -> Message | list[Message] | None:
        """Send an action; None when not connected, on timeout or when the link drops."""
        mgr = self._mgr
        proto = None if mgr is None else mgr.protocol
        if mgr is None or proto is None or getattr(proto, "closed", True):
            return None
        action = Action(fields, as_list=as_list)
        # send_action() sets the action's as_list again (None unless given): pass it on.
        future = mgr.send_action(action, as_list=as_list)
        try:
            result: Message | list[Message] = await asyncio.wait_for(future, timeout)
        except (TimeoutError, ConnectionError):
            proto.responses.pop(action.id, None)
            return None
        return result

    def _route(self, event: Event) -> None:
        """OriginateResponse settles an originate of ours; every event goes on to ``on_event``
        (the call model ignores what it does not handle)."""
        if event.get("Event") == ORIGINATE_RESPONSE:
            self.originates.resolve(event)
        self._on_event(event)

    def drop(self, proto: Any, reason: str) -> None:
        """Abort the link ``proto`` carries; panoramisk's ``connection_lost`` reconnects."""
        self._reason = reason
        log.warning("%s; dropping the connection", reason)
        with contextlib.suppress(Exception):
            proto.transport.abort()

    # -- panoramisk callbacks ---------------------------------------------------------------

    def _connect_failed(self, exc: BaseException) -> None:
        text = f"cannot connect to {self.cfg.host}:{self.cfg.port}: {exc.__class__.__name__}"
        if getattr(exc, "strerror", None):
            text += f" ({exc.strerror})"  # type: ignore[attr-defined]
        changed = text != self._last_error
        self._last_error = text
        if changed:
            log.warning("AMI %s; retrying every %.0fs", text, self.cfg.reconnect_interval)
            self._set_state()

    def _on_connect(self, mgr: Manager) -> None:
        self._set_link(LinkState.LOGGING_IN)
        self.sink.fully_booted = False
        future = mgr.authenticated_future
        if future is not None:
            future.add_done_callback(functools.partial(self._login_answer, mgr.protocol))

    def _login_answer(self, proto: Any, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        if future.result().success:
            return  # panoramisk calls on_login
        if not self._login_failed:
            log.error(
                "AMI login failed for user %r on %s:%d (check secret/permit in manager.conf);"
                " retrying every %.0fs",
                self.cfg.username,
                self.cfg.host,
                self.cfg.port,
                self._login_retry,
            )
        self._login_failed = True
        self._last_error = self._reason = "AMI login failed"
        assert self._mgr is not None
        self._mgr.reconnect_timeout = self._login_retry
        # Asterisk closes after a failed login; make sure, and let panoramisk reconnect later.
        with contextlib.suppress(Exception):
            proto.transport.close()
        self._set_state()

    def _on_login(self, mgr: Manager) -> None:
        if self._mgr is None or self._mgr.stopped:
            return
        self._logins += 1
        if self._login_failed:
            log.info("AMI login accepted again")
        self._login_failed = False
        self._last_error = self._reason = None
        self._since = time.time()
        mgr.reconnect_timeout = self.cfg.reconnect_interval
        self._set_link(LinkState.LOGGED_IN)
        log.info("AMI logged in to %s:%d", self.cfg.host, self.cfg.port)
        self._set_state()
        self._spawn(self._listing.run(mgr))

    def _on_disconnect(self, mgr: Manager, exc: BaseException | None) -> None:
        was_logged_in = self.connected
        if self._link is not LinkState.STOPPED:  # stop() closed it: stays stopped
            self._set_link(LinkState.CONNECTING)
        if self._mgr is not None:
            self._mgr.fail_pending()
        self.originates.fail_all()
        if self._reason is not None:
            self._last_error = self._reason
        else:
            detail = f": {exc}" if exc else ""
            self._last_error = f"AMI connection lost{detail}"
        if was_logged_in:
            log.warning("%s; reconnecting in %.0fs", self._last_error, mgr.reconnect_timeout)
        self._set_state()

    def _set_link(self, link: LinkState) -> None:
        self._link = link
        self._link_since = time.monotonic()
        if link is LinkState.LOGGED_IN:
            self._logged_in.set()
        else:
            self._logged_in.clear()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _set_state(self) -> None:
        if self._on_state is None:
            return
        try:
            self._on_state()
        except Exception:
            log.exception("AMI state callback failed")

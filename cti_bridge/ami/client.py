"""The AMI side of the daemon: one panoramisk 1.4 Manager, hardened.

panoramisk keeps the TCP connection, the login and the action/response matching. Around it
(asterisk-ami.md §5 lists the 1.4 bugs this works around):

- events go through :mod:`cti_bridge.ami.protocol` (lean, bounded, UTF-8 safe) to ONE synchronous
  callback; an exception there is counted and logged, it never reaches panoramisk (bug 1) and
  order is kept (no coroutine callbacks, bug 2);
- a watchdog pings and aborts the transport when the Pong does not come back, because
  panoramisk never checks it (bug 4); the abort makes panoramisk reconnect by itself;
- ``connect()`` is called once: panoramisk already reschedules itself after a refused connect
  (bug 5), a second retry loop would run parallel connections;
- a refused login raises nothing in panoramisk (bug 6): the login answer is watched here,
  reported as "AMI login failed" and retried at a slow pace;
- events during a disconnect are lost (bug 8): every login runs CoreShowChannels and hands the
  channel list to ``on_resync``;
- actions still pending when the link drops would only be resent on FullyBooted (bug 7); they
  are failed at once instead, and every action here runs under ``wait_for``.
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

from cti_bridge.ami.protocol import (
    DEFAULT_WANTED_EVENTS,
    Event,
    LeanAMIProtocol,
    ProtoStats,
    RateLimitedLog,
)
from cti_bridge.causes import Q850
from cti_bridge.config import AmiConfig

__all__ = ["DEFAULT_WANTED_EVENTS", "AmiClient", "Event"]

log = logging.getLogger("cti_bridge.ami.client")

#: Pace of new attempts after a refused login: fixing manager.conf recovers without a restart,
#: without hammering Asterisk (which logs every failed login).
LOGIN_RETRY_INTERVAL = 30.0
#: panoramisk's own pinger is replaced by the watchdog; park it far in the future.
_NEVER = 10**9


class _Manager(Manager):  # type: ignore[misc]
    """panoramisk Manager that reports connect failures and stays down once stopped."""

    def __init__(self, client: AmiClient, **config: Any) -> None:
        super().__init__(**config)
        self._client = client
        self.stopped = False

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        if self.stopped:  # a reconnect timer scheduled before stop() fired
            return None
        return super().connect(*args, **kwargs)

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if f.cancelled():
            return
        exc = f.exception()
        if self.stopped:
            if exc is None:
                f.result()[0].close()
            return
        if exc is not None:
            self._client._connect_failed(exc)
            if not isinstance(exc, OSError):  # panoramisk only reschedules after OSError
                self.loop.call_later(self.reconnect_timeout, self.connect)
                return
        super().connection_made(f)


def _plain(message: Message) -> Event:
    """A panoramisk Message as the same plain dict events use (repeats joined by LF)."""
    out: Event = {}
    for key, value in message.items():
        if key == "content":  # panoramisk's body slot, not an AMI header
            continue
        out[key] = "\n".join(value) if isinstance(value, list) else str(value)
    return out


class AmiClient:
    """Connection to one Asterisk manager interface, feeding one synchronous event callback."""

    def __init__(
        self,
        cfg: AmiConfig,
        on_event: Callable[[Event], None],
        *,
        on_resync: Callable[[list[Event]], None] | None = None,
        on_state: Callable[[], None] | None = None,
        wanted_events: frozenset[str] | None = None,
        login_retry_interval: float = LOGIN_RETRY_INTERVAL,
        resync_timeout: float | None = None,
    ) -> None:
        self.cfg = cfg
        self._on_event = on_event
        self._on_resync = on_resync
        self._on_state = on_state
        self._wanted = DEFAULT_WANTED_EVENTS if wanted_events is None else wanted_events
        self._login_retry = login_retry_interval
        self._resync_timeout = resync_timeout or max(cfg.ping_timeout, 10.0)
        self.stats = ProtoStats()  # counters of every connection: they survive reconnects
        self._rlog = RateLimitedLog(log)
        self._mgr: _Manager | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._logged_in = asyncio.Event()  # binds to a loop lazily (3.10+)
        self._tcp_since: float | None = None
        self._login_failed = False
        self._last_error: str | None = None
        self._reason: str | None = None  # why we dropped the link ourselves
        self._since: float | None = None
        self._logins = 0
        self._fully_booted = False
        self._call_event_seen = False

    # -- public state -----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Logged in (a TCP connection without a successful login does not count)."""
        return self._logged_in.is_set()

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
        loop = asyncio.get_running_loop()
        factory = functools.partial(
            LeanAMIProtocol,
            sink=self._deliver,
            stats=self.stats,
            wanted=self._wanted,
            rlog=self._rlog,
        )
        self._mgr = _Manager(
            self,
            loop=loop,
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
        self._watchdog = asyncio.create_task(self._watch(), name="ami-watchdog")
        log.info("AMI connecting to %s:%d as %r", self.cfg.host, self.cfg.port, self.cfg.username)
        # A refusal is already recorded by _connect_failed and panoramisk retries by itself.
        with contextlib.suppress(OSError):
            await self._mgr.connect()

    async def stop(self) -> None:
        mgr = self._mgr
        if mgr is None:
            return
        mgr.stopped = True
        if self._watchdog is not None:
            # 3.11's wait_for can swallow a cancel when its future completes at the same
            # moment; the watchdog also checks ``stopped``, and this wait is bounded.
            self._watchdog.cancel()
            await asyncio.wait([self._watchdog], timeout=self.cfg.ping_timeout + 1.0)
        for task in list(self._tasks):
            task.cancel()
        mgr.close()
        self._fail_pending()
        self._logged_in.clear()
        self._mgr = None
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
        """AMI Hangup (racy by nature, see asterisk-ami.md §4); True if Asterisk hung it up."""
        resp = await self._request(
            {"Action": "Hangup", "Channel": channel, "Cause": str(cause)}, self.cfg.ping_timeout
        )
        if not isinstance(resp, Message):
            log.warning("AMI Hangup of %s: no answer", channel)
            return False
        if not resp.success:
            log.info("AMI Hangup of %s refused: %s", channel, resp.get("Message", ""))
            return False
        return True

    async def check(self, timeout: float) -> list[tuple[str, bool, str]]:
        """Checks for ``cti-bridge check``: (name, ok, detail), in order of dependency."""
        where = f"{self.cfg.host}:{self.cfg.port}"
        results: list[tuple[str, bool, str]] = []
        deadline = time.monotonic() + timeout
        if not await self.wait_logged_in(timeout, give_up_on_refusal=True):
            detail = self._last_error or "no successful login within the timeout"
            results.append(("AMI login", False, f"{where} as {self.cfg.username!r}: {detail}"))
            return results
        results.append(("AMI login", True, f"{where} as {self.cfg.username!r}"))
        remaining = max(deadline - time.monotonic(), 1.0)
        resp = await self._request({"Action": "CoreShowChannels"}, remaining)
        if isinstance(resp, list):
            n = sum(1 for m in resp if m.get("Event") == "CoreShowChannel")
            results.append(("AMI CoreShowChannels (resync)", True, f"{n} active channel(s)"))
        elif resp is None:
            results.append(("AMI CoreShowChannels (resync)", False, "no answer"))
        else:
            results.append(
                (
                    "AMI CoreShowChannels (resync)",
                    False,
                    f"{resp.get('Message', 'refused')}: manager.conf write= needs reporting",
                )
            )
        results.append(
            (
                "AMI system events",
                self._fully_booted,
                "FullyBooted received after login"
                if self._fully_booted
                else "no FullyBooted after login: manager.conf read= needs system",
            )
        )
        # No AMI action reveals one's read permissions, and none makes a call event without
        # making a call; so this one can only confirm what was seen.
        results.append(
            (
                "AMI call events",
                True,
                "call events received"
                if self._call_event_seen
                else "not verified (no call activity seen); manager.conf read= needs call",
            )
        )
        return results

    async def _request(
        self, fields: dict[str, str], timeout: float, as_list: bool | None = None
    ) -> Message | list[Message] | None:
        """Send an action; None when not connected, on timeout or when the link drops."""
        mgr = self._mgr
        proto = None if mgr is None else mgr.protocol
        if mgr is None or proto is None or getattr(proto, "closed", True):
            return None
        action = Action(fields, as_list=as_list)
        future = mgr.send_action(action)
        try:
            result: Message | list[Message] = await asyncio.wait_for(future, timeout)
        except (TimeoutError, ConnectionError):
            proto.responses.pop(action.id, None)
            return None
        return result

    # -- events -----------------------------------------------------------------------------

    def _deliver(self, event: Event) -> None:
        """The protocol's sink: never lets the callback's exception reach panoramisk."""
        name = event.get("Event")
        if name == "FullyBooted":
            self._fully_booted = True
        elif not self._call_event_seen and event.get("Privilege", "").startswith("call"):
            self._call_event_seen = True
        try:
            self._on_event(event)
        except Exception as exc:
            self.stats.callback_errors += 1
            self._rlog(
                f"callback:{type(exc).__name__}",
                logging.ERROR,
                "AMI event handler failed on %s (%s); event skipped",
                name,
                type(exc).__name__,
                exc_info=True,
            )

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
        self._tcp_since = time.monotonic()
        self._fully_booted = False
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
        self._last_error = "AMI login failed"
        self._reason = "AMI login failed"
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
        self._last_error = None
        self._reason = None
        self._since = time.time()
        mgr.reconnect_timeout = self.cfg.reconnect_interval
        self._logged_in.set()
        log.info("AMI logged in to %s:%d", self.cfg.host, self.cfg.port)
        self._set_state()
        self._spawn(self._resync())

    def _on_disconnect(self, mgr: Manager, exc: BaseException | None) -> None:
        was_logged_in = self.connected
        self._tcp_since = None
        self._logged_in.clear()
        self._fail_pending()
        if self._reason is not None:
            self._last_error = self._reason
        else:
            detail = f": {exc}" if exc else ""
            self._last_error = f"AMI connection lost{detail}"
        if was_logged_in:
            log.warning("%s; reconnecting in %.0fs", self._last_error, mgr.reconnect_timeout)
        self._set_state()

    def _fail_pending(self) -> None:
        """Fail actions panoramisk parked for a resend on FullyBooted: callers time out anyway."""
        mgr = self._mgr
        if mgr is None:
            return
        while mgr.awaiting_actions:
            action = mgr.awaiting_actions.popleft()
            if not action.future.done():
                action.future.set_exception(ConnectionError("AMI connection lost"))

    # -- resync and watchdog ----------------------------------------------------------------

    async def _resync(self) -> None:
        action = Action({"Action": "CoreShowChannels"})
        action.on_complete = self._resync_done
        mgr = self._mgr
        if mgr is None:
            return
        future = mgr.send_action(action)
        try:
            await asyncio.wait_for(future, self._resync_timeout)
        except (TimeoutError, ConnectionError):
            action.on_complete = None
            if mgr.protocol is not None:
                mgr.protocol.responses.pop(action.id, None)
            log.warning("AMI CoreShowChannels got no complete answer; no resync this time")

    def _resync_done(self, result: Message | list[Message]) -> None:
        """Called by the protocol right at the list's Complete event (stream order kept)."""
        if not isinstance(result, list):
            self._rlog(
                "resync-denied",
                logging.ERROR,
                "AMI CoreShowChannels refused (%s): calls that changed while disconnected are"
                " not reconciled; add 'reporting' to write= in manager.conf",
                result.get("Message", "error"),
            )
            return
        channels = [_plain(m) for m in result if m.get("Event") == "CoreShowChannel"]
        log.debug("AMI resync: %d active channel(s)", len(channels))
        if self._on_resync is None:
            return
        try:
            self._on_resync(channels)
        except Exception:
            self.stats.callback_errors += 1
            log.exception("AMI resync handler failed")

    async def _watch(self) -> None:
        """Ping when logged in; abort a link whose Pong (or login answer) does not come back."""
        cfg = self.cfg
        while self._mgr is not None and not self._mgr.stopped:
            await asyncio.sleep(cfg.ping_interval)
            mgr = self._mgr
            if mgr is None or mgr.stopped or mgr.protocol is None:
                continue
            proto = mgr.protocol
            if self.connected:
                resp = await self._request({"Action": "Ping"}, cfg.ping_timeout)
                if resp is not None or proto is not mgr.protocol or not self.connected:
                    continue
                last = self.stats.last_event_at
                if last is not None and time.time() - last < cfg.ping_timeout:
                    # Events are still arriving: the Pong is queued behind them (a flood we
                    # are slow to read), the link is not half-open. Dropping it would lose
                    # the very events that are late.
                    continue
                self._reason = f"AMI ping timeout ({cfg.ping_timeout:g}s)"
            elif (
                self._tcp_since is not None
                and not self._login_failed
                and time.monotonic() - self._tcp_since > cfg.ping_interval + cfg.ping_timeout
            ):
                self._reason = "AMI login not answered"
            else:
                continue
            log.warning("%s; dropping the connection", self._reason)
            with contextlib.suppress(Exception):
                proto.transport.abort()  # panoramisk's connection_lost reconnects

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

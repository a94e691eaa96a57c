"""The health gate: while Zammad is down or refuses the bridge, one prober is the only sender.

A backlog must not hammer a sick server, and a fixed Zammad must drain it without a restart
(docs/zammad-cti.md#5-status-codes-and-error-bodies). So on the first failure the workers park
behind the gate and one prober task takes over: a ``tenacity.AsyncRetrying`` loop that posts
one event at a time, spaced

- while Zammad is DOWN (unreachable, timing out, 429/5xx): by exponential waits with full jitter
  capped at ``max_backoff``, so several bridges (or a restart) do not probe in step;
- while Zammad REJECTED the bridge (token, URL, integration off): every
  ``config_retry_interval``; nothing else helps until an administrator fixes it.

The first accepted post opens the gate and releases the workers. No task ticks while Zammad is
healthy: the prober exists only while it is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum

import tenacity

from cti_bridge.config import ZammadConfig
from cti_bridge.zammad.errors import ZammadError

log = logging.getLogger(__name__)


class State(StrEnum):
    """Zammad's health as delivery sees it (``status()["state"]``, the sd_notify STATUS line)."""

    OK = "ok"
    DOWN = "down"  # unreachable, timing out, 429/5xx: probed with exponential backoff
    REJECTED = "rejected"  # refuses the bridge's configuration: probed every config_retry_interval


class _Unhealthy(Exception):
    """Raised inside the prober's tenacity loop while Zammad is not healthy: try again later."""


class Kick:
    """Sleeps that end early when kicked: on stop, and when Zammad is healthy again."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    async def pause(self, seconds: float) -> None:
        kick = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(kick.wait(), seconds)

    def all(self) -> None:
        """End every pause going on now (later ones sleep their full time)."""
        self._event.set()
        self._event = asyncio.Event()


class HealthGate:
    """Zammad's :class:`State`, the gate the workers wait at, and the prober behind it."""

    def __init__(
        self,
        cfg: ZammadConfig,
        probe_once: Callable[[], Awaitable[None]],
        kick: Kick,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cfg = cfg
        self._probe_once = probe_once  # posts one event; called only while not healthy
        self._kick = kick
        self._clock = clock
        self.on_state: Callable[[State], None] | None = None  # called on every change of state
        self.last_ok_at: float | None = None
        # "Full jitter": uniform in [0, min(max_backoff, 2**attempt)].
        self._down_wait = tenacity.wait_random_exponential(multiplier=1.0, max=cfg.max_backoff)
        self._state = State.OK
        self._healthy_again = asyncio.Event()
        self._prober: asyncio.Task[None] | None = None
        self._open = False  # delivery runs: a failure starts the prober

    @property
    def state(self) -> State:
        return self._state

    def open(self) -> None:
        """Delivery starts; if it stopped while Zammad was unhealthy, probe before the workers."""
        self._open = True
        if self._state is State.OK:
            self._healthy_again.set()
        else:
            self._start_prober()

    def close(self) -> asyncio.Task[None] | None:
        """Delivery stops: release the parked workers; returns the prober for the caller to end."""
        self._open = False
        self._healthy_again.set()
        prober, self._prober = self._prober, None
        return prober

    async def wait_healthy(self) -> None:
        """Park a worker while the prober has the only request slot."""
        await self._healthy_again.wait()

    def accepted(self) -> None:
        """Zammad accepted a post: the gate opens, the prober's wait ends."""
        self.last_ok_at = self._clock()
        if self._state is not State.OK:
            log.warning("Zammad at %s accepts events again", self._cfg.display_url)
            self._set_state(State.OK)
            self._healthy_again.set()
            self._kick.all()  # the prober's wait ends; it sees the state and returns

    def went_down(self, err: ZammadError) -> None:
        if self._state is not State.DOWN:
            log.warning(
                "Zammad at %s unavailable (%s); events are kept and retried",
                self._cfg.display_url,
                err.reason,
            )
            self._set_state(State.DOWN)
        self._start_prober()

    def refused(self, err: ZammadError) -> None:
        if self._state is not State.REJECTED:
            log.error(
                "Zammad at %s rejects the bridge (%s): check the token/URL and that the Generic "
                "CTI integration is enabled. Events are kept; retrying every %.0f s",
                self._cfg.display_url,
                err.reason,
                self._cfg.config_retry_interval,
            )
            self._set_state(State.REJECTED)
        self._start_prober()

    def _set_state(self, state: State) -> None:
        self._state = state
        if self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:  # a status bug must not stop delivery
                log.exception("delivery state callback failed")

    def _start_prober(self) -> None:
        if not self._open:  # a post that failed during stop(): the next start() probes
            return
        self._healthy_again.clear()
        if self._prober is None or self._prober.done():
            self._prober = asyncio.create_task(self._probe(), name="zammad-prober")

    async def _probe(self) -> None:
        """Retry with tenacity until Zammad accepts a post again, one request at a time.

        Attempt 1 is the post that just failed, so the loop starts with a wait. Every later
        attempt posts the head of the next ready call. The wait follows the state (module doc).
        """
        retrying = tenacity.AsyncRetrying(
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Unhealthy),
            sleep=self._kick.pause,
        )
        async for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    await self._probe_once()
                if self._state is not State.OK and self._open:
                    raise _Unhealthy(self._state)

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        if self._state is State.REJECTED:
            return self._cfg.config_retry_interval
        return float(self._down_wait(retry_state))

"""The health gate: states, the callback, and one prober until a post is accepted."""

from __future__ import annotations

import asyncio

from cti_bridge.config import Secret, ZammadConfig
from cti_bridge.zammad import State, ZammadRejected, ZammadUnavailable
from cti_bridge.zammad.health import HealthGate, Kick

CFG = ZammadConfig(
    url=Secret("http://127.0.0.1:9/api/v1/cti/tok-12345"),
    max_backoff=0.01,
    config_retry_interval=0.01,
)


async def test_down_then_refused_then_ok_with_one_prober() -> None:
    probes = 0
    gate: HealthGate

    async def probe_once() -> None:
        nonlocal probes
        probes += 1
        if probes == 2:
            gate.refused(ZammadRejected("HTTP 401", status_code=401))
        if probes == 4:
            gate.accepted()

    gate = HealthGate(CFG, probe_once, Kick(), clock=lambda: 42.0)
    states: list[State] = []
    gate.on_state = states.append
    gate.open()
    await asyncio.wait_for(gate.wait_healthy(), 1)  # healthy at start: the gate is open
    gate.went_down(ZammadUnavailable("cannot connect", maybe_processed=False))
    gate.went_down(ZammadUnavailable("cannot connect", maybe_processed=False))  # same prober
    assert gate.state is State.DOWN
    await asyncio.wait_for(gate.wait_healthy(), 5)
    assert states == [State.DOWN, State.REJECTED, State.OK]
    assert probes == 4 and gate.last_ok_at == 42.0
    assert gate.close() is not None


async def test_a_failure_while_closed_starts_no_prober() -> None:
    async def probe_once() -> None:
        raise AssertionError("no probe while closed")

    gate = HealthGate(CFG, probe_once, Kick())
    gate.went_down(ZammadUnavailable("timeout"))
    assert gate.state is State.DOWN
    assert gate.close() is None


async def test_a_kick_ends_a_pause_early() -> None:
    kick = Kick()
    pause = asyncio.create_task(kick.pause(30))
    await asyncio.sleep(0)
    kick.all()
    await asyncio.wait_for(pause, 1)

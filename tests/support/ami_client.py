"""An AmiClient running against the fake AMI server, for the tests of every AMI module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from cti_bridge.ami.client import AmiClient
from cti_bridge.config import AmiConfig
from tests.support.fake_ami import TEST_WANTED_EVENTS, FakeAmi, Recorder, ami_config

SECRET = "very-s3cret-pw"


@asynccontextmanager
async def running(
    server: FakeAmi,
    rec: Recorder | None = None,
    on_event: Callable[[dict[str, str]], None] | None = None,
    **kwargs: Any,
) -> AsyncIterator[AmiClient]:
    rec = rec or Recorder()
    cfg_over = {k: kwargs.pop(k) for k in list(kwargs) if k in AmiConfig.__dataclass_fields__}
    # The product's filter plus the UserEvent markers the tests synchronise on.
    kwargs.setdefault("wanted_events", TEST_WANTED_EVENTS)
    client = AmiClient(
        ami_config(server, **cfg_over),
        on_event or rec.on_event,
        on_resync=rec.on_resync,
        on_state=rec.on_state,
        **kwargs,
    )
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


def chan(n: int) -> dict[str, str]:
    return {
        "Channel": f"PJSIP/carrier-{n:08x}",
        "ChannelState": "6",
        "ChannelStateDesc": "Up",
        "CallerIDNum": "491710000001",
        "Uniqueid": f"1700000000.{n}",
        "Linkedid": f"1700000000.{n}",
        "Application": "Dial",
        "Duration": "00:00:12",
    }

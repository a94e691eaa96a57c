"""``cti-bridge check``: can this config reach its PBX and its Zammad? One result per check."""

from __future__ import annotations

from cti_bridge.ami.client import AmiClient
from cti_bridge.config import Config
from cti_bridge.zammad.client import check_endpoint

Result = tuple[str, bool, str]


async def run_checks(cfg: Config, *, timeout: float = 8.0) -> list[Result]:
    results: list[Result] = [("config", True, cfg.path)]
    ami = AmiClient(cfg.ami, lambda _event: None)
    try:
        await ami.start()
        results.extend(await ami.check(timeout))
    finally:
        await ami.stop()
    ok, detail = await check_endpoint(cfg.zammad)
    results.append(("Zammad endpoint and token", ok, detail))
    return results

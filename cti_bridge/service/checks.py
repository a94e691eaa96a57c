"""``cti-bridge check``: can this config reach its PBX and its Zammad? One result per check."""

from __future__ import annotations

import dataclasses
import ssl

from cti_bridge.ami.checks import check_originate
from cti_bridge.ami.client import AmiClient
from cti_bridge.config import Config, WebConfig
from cti_bridge.zammad.client import check_endpoint

Result = tuple[str, bool, str]


async def run_checks(cfg: Config, *, timeout: float = 8.0) -> list[Result]:
    results: list[Result] = [("config", True, cfg.path)]
    ami = AmiClient(cfg.ami, lambda _event: None)
    try:
        await ami.start()
        results.extend(await ami.check(timeout))
        if cfg.dial.enabled and ami.connected:
            results.append(await check_originate(ami, timeout))
    finally:
        await ami.stop()
    if cfg.zammad.url.get() or not cfg.route:
        ok, detail = await check_endpoint(cfg.zammad)
        results.append(("Zammad endpoint and token", ok, detail))
    for route in cfg.route:  # each [[route]]'s Zammad, with [zammad]'s other settings
        ok, detail = await check_endpoint(dataclasses.replace(cfg.zammad, url=route.url))
        results.append((f"Zammad endpoint and token of route {route.name}", ok, detail))
    results.append(web_check(cfg.web))
    return results


def web_check(web: WebConfig) -> Result:
    """Where the web listener will be, and whether its certificate and key load."""
    name = "web listener"
    if not web.listen:
        return name, True, "off ([web] listen is empty)"
    detail = f"{'https' if web.tls else 'http'}://{web.listen}"
    if web.public_url:
        detail += f", public {web.public_url}"
    if web.tls_cert and web.tls_key:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                web.tls_cert, web.tls_key
            )
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            return name, False, f"{detail}: tls_cert/tls_key do not load: {reason}"
    elif web.exposed_without_tls:
        detail += " (warning: plain HTTP beyond loopback; use TLS or a reverse proxy)"
    return name, True, detail

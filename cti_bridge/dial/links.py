"""The URLs ``cti-bridge dial-link`` prints, under ``[web] public_url``."""

from __future__ import annotations

import urllib.parse

from cti_bridge.dial.keys import LinkKeys


def _base(public_url: str, ext: str) -> str:
    return public_url.rstrip("/") + "/dial/" + urllib.parse.quote(ext, safe="")


def setup_url(public_url: str, keys: LinkKeys, ext: str, serial: int) -> str:
    """The agent's personal setup page."""
    return f"{_base(public_url, ext)}?key={keys.key(ext, serial)}"


def handler_template(public_url: str, keys: LinkKeys, ext: str, serial: int) -> str:
    """The handler URL with ``%s`` where the browser puts the (encoded) ``tel:`` URL."""
    return f"{_base(public_url, ext)}/call?key={keys.key(ext, serial)}&to=%s"

"""A running daemon with [web] and [dial] against the fake AMI, and the dial links it answers."""

from __future__ import annotations

import socket
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cti_bridge.config import Config, parse_config
from cti_bridge.demo.zammad import FakeZammad
from cti_bridge.dial.keys import LinkKeys
from cti_bridge.dial.links import handler_template, setup_url
from cti_bridge.service.daemon import Daemon
from tests.service.test_daemon import make_config, running, until
from tests.support.fake_ami import FakeAmi

DIAL_SECRET = "dial-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DialBridge:
    daemon: Daemon
    ami: FakeAmi
    http: httpx.AsyncClient
    cfg: Config
    base: str

    def setup_url(self, ext: str = "101") -> str:
        return setup_url(self.base, LinkKeys(self.cfg.dial.secret), ext, self.serial(ext))

    def handler(self, tel: str, ext: str = "101") -> str:
        keys = LinkKeys(self.cfg.dial.secret)
        template = handler_template(self.base, keys, ext, self.serial(ext))
        return template.replace("%s", urllib.parse.quote(tel, safe=""))  # as browsers do

    def serial(self, ext: str) -> int:
        return self.daemon.outbox.dial_serial(ext)


def dial_config(tmp: Path, ami: FakeAmi, zammad: FakeZammad, port: int, **dial: object) -> Config:
    base = f"http://127.0.0.1:{port}"
    data = make_config(
        tmp,
        ami,
        zammad.url(),
        web={"listen": f"127.0.0.1:{port}", "public_url": base + "/"},
        numbers={"region": "DE"},
        dial={
            "secret": DIAL_SECRET,
            "devices": {"101": "PJSIP/alice"},
            "prefix": "0",
            "deny": ["49900*"],
            **dial,
        },
    )
    (tmp / "cti-bridge.toml").write_text("")  # the CLI tests write the real file themselves
    return parse_config(data, tmp / "cti-bridge.toml")


@pytest.fixture
async def dial_bridge(tmp_path: Path) -> AsyncIterator[DialBridge]:
    port = free_port()
    async with FakeAmi() as ami:
        with FakeZammad() as zammad:
            cfg = dial_config(tmp_path, ami, zammad, port)
            async with running(cfg) as daemon:
                await ami.wait_login()
                await until(lambda: "url" in daemon.snapshot()["web"] and daemon.ami.connected)
                base = f"http://127.0.0.1:{port}"
                async with httpx.AsyncClient(base_url=base, timeout=5.0) as http:
                    yield DialBridge(daemon, ami, http, cfg, base)

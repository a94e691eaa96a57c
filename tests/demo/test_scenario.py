"""The demo's round as data: its click-to-dial call and the bridge configuration it needs."""

from __future__ import annotations

from pathlib import Path

from cti_bridge.config import load_config
from cti_bridge.demo.lab import daemon_config
from cti_bridge.demo.runner import dial_config
from cti_bridge.demo.scenario import CLICK_TO_DIAL, ClickToDial, demo_round
from cti_bridge.dial.tel import parse_tel


def test_every_row_of_the_round_has_its_own_key() -> None:
    keys = [call.key() for call in demo_round()]
    assert len(keys) == len(set(keys))


def test_click_to_dial_is_in_the_round_and_expects_the_number_it_dials() -> None:
    (call,) = CLICK_TO_DIAL
    assert call in demo_round()
    assert isinstance(call.place, ClickToDial)
    assert call.key() == ("out", call.place.extension, parse_tel(call.place.tel).lstrip("+"))


def test_the_demo_bridge_config_turns_click_to_dial_on(tmp_path: Path) -> None:
    web = "127.0.0.1:28080"
    path = daemon_config(
        tmp_path,
        ami_port=25038,
        ami_username="cti-bridge",
        ami_secret="s3cret",
        zammad_url="http://127.0.0.1:28081/api/v1/cti/token",
        agi_port=24573,
        web_listen=web,
        extra=dial_config(web, "a-secret-of-enough-length"),
    )
    cfg = load_config(path)
    assert cfg.dial.enabled
    assert cfg.web.public_url is not None
    assert cfg.web.public_url.rstrip("/") == f"http://{web}"
    assert dict(cfg.dial.devices) == {"101": "PJSIP/alice"}
    assert (cfg.dial.context, cfg.dial.prefix) == ("from-internal", "0")

"""``[web]`` keys, the retired ``[metrics]`` section, and what ``check`` says about the listener."""

from __future__ import annotations

from pathlib import Path

import pytest

from cti_bridge.config import WebConfig, load_config, parse_config
from cti_bridge.service.checks import web_check
from tests.support.cli import cli
from tests.support.raw_http import self_signed
from tests.test_config import GOOD, good_with, refused, write


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('listen = "9464"', "[web] listen: expected host:port"),
        ("listen = 9464", "[web] listen: expected a string"),
        ('public_url = "pbx.example.com"', "[web] public_url: expected an http(s):// URL"),
        ('public_url = "ftp://pbx.example.com/"', "[web] public_url: expected an http(s):// URL"),
        ('public_url = "https://u:p@pbx.example.com/"', "[web] public_url: expected an http(s)"),
        ('public_url = "https://pbx.example.com/?k=1"', "[web] public_url: expected an http(s)"),
        ('tls_cert = "/etc/c.pem"', "[web] tls_key: required when tls_cert is set"),
        ('tls_key = "/etc/k.pem"', "[web] tls_cert: required when tls_key is set"),
        ('tls_cert = ""', "[web] tls_cert: must not be empty"),
        ('listn = "127.0.0.1:1"', "[web] listn: unknown key"),
    ],
)
def test_bad_web_keys_are_one_line_naming_the_key(tmp_path: Path, line: str, message: str) -> None:
    assert message in refused(tmp_path, good_with("web", line))


@pytest.mark.parametrize("body", ['listen = "127.0.0.1:9464"', ""])
def test_the_metrics_section_points_to_the_web_listener(tmp_path: Path, body: str) -> None:
    message = refused(tmp_path, GOOD + f"\n[metrics]\n{body}\n")
    where = "[metrics] listen:" if body else "[metrics]:"
    assert where in message and "set [web] listen" in message


def test_the_metrics_section_exits_2_on_every_command(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + '\n[metrics]\nlisten = "127.0.0.1:9464"\n')
    for command in ("run", "check"):
        res = cli(command, "--config", str(path))
        assert res.returncode == 2, command
        assert "[metrics] listen" in res.stderr and "[web] listen" in res.stderr
        assert "Traceback" not in res.stderr


def test_good_web_section(tmp_path: Path) -> None:
    text = good_with("web", 'listen = "[::1]:9464"\npublic_url = "https://pbx.example.com/cti/"')
    cfg = load_config(write(tmp_path, text))
    assert cfg.web.listen == "[::1]:9464" and cfg.web.public_url == "https://pbx.example.com/cti/"
    assert not cfg.web.tls and not cfg.web.exposed_without_tls and cfg.warnings == ()
    assert load_config(write(tmp_path, GOOD)).web.listen == ""  # off by default


@pytest.mark.parametrize("listen", ["0.0.0.0:9464", "192.0.2.1:9464", "[::]:9464"])
def test_plain_http_beyond_loopback_is_a_warning(tmp_path: Path, listen: str) -> None:
    cfg = load_config(write(tmp_path, good_with("web", f'listen = "{listen}"')))
    assert cfg.web.exposed_without_tls
    assert len(cfg.warnings) == 1 and "[web] listen" in cfg.warnings[0]
    assert "plain HTTP" in cfg.warnings[0]
    ok, detail = web_check(cfg.web)[1:]
    assert ok and "warning: plain HTTP beyond loopback" in detail
    res = cli("check", "--config", str(tmp_path / "cti-bridge.toml"))  # AMI/Zammad fail; shown
    assert "warning: " in res.stderr and "[web] listen" in res.stderr
    assert "web listener: http://" in res.stdout


def _web(**keys: str) -> WebConfig:
    base = {"ami": {"username": "u", "secret": "s"}, "zammad": {"url": "http://z/api/v1/cti/t"}}
    return parse_config({**base, "web": keys}).web


def test_check_loads_the_certificate(tmp_path: Path) -> None:
    pair = self_signed(tmp_path)
    if pair is None:
        pytest.skip("no openssl tool to make a test certificate")
    cert, key = pair
    web = _web(listen="0.0.0.0:8443", tls_cert=str(cert), tls_key=str(key))
    assert web_check(web) == ("web listener", True, "https://0.0.0.0:8443")
    broken = _web(listen="0.0.0.0:8443", tls_cert=str(cert), tls_key=str(tmp_path / "none.pem"))
    _, ok, detail = web_check(broken)
    assert not ok and "tls_cert/tls_key do not load" in detail
    assert web_check(_web()) == ("web listener", True, "off ([web] listen is empty)")

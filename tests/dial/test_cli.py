"""``cti-bridge dial-link`` as an operator runs it, and ``check`` with [dial]."""

from __future__ import annotations

from pathlib import Path

from cti_bridge.config import parse_config
from cti_bridge.demo.zammad import FakeZammad
from cti_bridge.service.checks import run_checks
from tests.dial.conftest import DIAL_SECRET
from tests.service.test_daemon import make_config
from tests.support.cli import cli
from tests.support.fake_ami import FakeAmi


def _config(tmp: Path, dial: bool = True) -> Path:
    path = tmp / "c.toml"
    text = (
        '[ami]\nusername = "u"\nsecret = "s"\n'
        '[zammad]\nurl = "https://z.example/api/v1/cti/t"\n'
        f'[outbox]\npath = "{tmp / "outbox.sqlite3"}"\n'
        '[web]\nlisten = "127.0.0.1:9464"\npublic_url = "https://pbx.example/cti/"\n'
    )
    if dial:
        (tmp / "dial-secret").write_text(DIAL_SECRET + "\n")
        text += '[dial]\nsecret_file = "dial-secret"\n'
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_dial_link_prints_the_setup_page_and_the_handler_template(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    page = cli("dial-link", "101", "-c", str(cfg))
    assert page.returncode == 0, page.stderr
    url = page.stdout.strip()
    assert url.startswith("https://pbx.example/cti/dial/101?key=")
    handler = cli("dial-link", "101", "--handler", "-c", str(cfg)).stdout.strip()
    assert handler == url.replace("?key=", "/call?key=") + "&to=%s"


def test_revoke_changes_the_key_for_good(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    before = cli("dial-link", "101", "-c", str(cfg)).stdout.strip()
    revoked = cli("dial-link", "101", "--revoke", "-c", str(cfg))
    assert revoked.returncode == 0
    assert "earlier links of 101 no longer work" in revoked.stderr
    after = revoked.stdout.strip()
    assert after != before
    assert cli("dial-link", "101", "-c", str(cfg)).stdout.strip() == after
    assert cli("dial-link", "102", "-c", str(cfg)).stdout.strip() != after


def test_dial_link_without_dial_or_with_a_bad_extension_exits_2(tmp_path: Path) -> None:
    off = cli("dial-link", "101", "-c", str(_config(tmp_path, dial=False)))
    assert off.returncode == 2 and "[dial] is not configured" in off.stderr
    bad = cli("dial-link", "1 01", "-c", str(_config(tmp_path)))
    assert bad.returncode == 2 and "is not an extension" in bad.stderr


async def test_check_reports_a_missing_originate_class(tmp_path: Path) -> None:
    async with FakeAmi() as ami:
        with FakeZammad() as zammad:
            data = make_config(
                tmp_path,
                ami,
                zammad.url(),
                web={"listen": "127.0.0.1:0", "public_url": "http://127.0.0.1/"},
                dial={"secret": DIAL_SECRET},
            )
            cfg = parse_config(data)
            ok = {name: (good, detail) for name, good, detail in await run_checks(cfg, timeout=5)}
            assert ok["AMI Originate (click-to-dial)"] == (True, "allowed")
            ami.denied.add("originate")
            refused = {n: (g, d) for n, g, d in await run_checks(cfg, timeout=5)}
            good, detail = refused["AMI Originate (click-to-dial)"]
            assert not good and "write= needs originate (never system)" in detail
            data.pop("dial")
            plain = [n for n, _, _ in await run_checks(parse_config(data), timeout=5)]
            assert "AMI Originate (click-to-dial)" not in plain

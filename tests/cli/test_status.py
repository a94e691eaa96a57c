"""``cti-bridge check`` and ``status`` against fake peers over loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cti_bridge.demo.zammad import FakeZammad
from tests.support.cli import cli, write_config
from tests.support.fake_ami import FakeAmi


def test_check_fails_on_wrong_token_and_unreachable_ami(tmp_path: Path) -> None:
    with FakeZammad() as zammad:
        cfg = write_config(tmp_path, zammad.url("badtoken999"))
        res = cli("check", "--config", str(cfg))
        assert res.returncode == 1
        lines = res.stdout.strip().splitlines()
        assert lines[0].startswith("ok   config")
        assert any(line.startswith("FAIL AMI login") for line in lines)
        assert any(line.startswith("FAIL Zammad") for line in lines)
        assert "badtoken999" not in res.stdout + res.stderr
        assert zammad.stored_count() == 0  # the check never creates a call


async def test_check_passes_against_working_peers(tmp_path: Path) -> None:
    async with FakeAmi() as ami:
        with FakeZammad() as zammad:
            cfg = write_config(tmp_path, zammad.url(), ami.port, ami.secret)
            res = await asyncio.to_thread(cli, "check", "--config", str(cfg))
            assert res.returncode == 0, res.stdout + res.stderr
            assert all(line.startswith("ok") for line in res.stdout.strip().splitlines())
            assert zammad.stored_count() == 0


def test_status_without_a_daemon_exits_3(tmp_path: Path) -> None:
    res = cli("status", "--socket", str(tmp_path / "none.sock"))
    assert res.returncode == 3 and res.stderr.strip()


def test_status_reads_only_the_socket_from_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[status]\nsocket = "{tmp_path / "s.sock"}"\n')  # no [ami], no secrets
    res = cli("status", "--config", str(cfg))
    assert res.returncode == 3, res.stderr
    cfg.write_text("[status]\nsocket = 5\n")
    res = cli("status", "--config", str(cfg))
    assert res.returncode == 2 and "[status] socket" in res.stderr

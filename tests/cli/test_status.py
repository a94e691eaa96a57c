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


def test_status_of_an_instance_asks_its_socket(tmp_path: Path) -> None:
    """--instance (or the unit's $CTI_BRIDGE_INSTANCE) picks the instance's runtime directory
    when the config names no socket, and its config file when none is given."""
    cfg = tmp_path / "pbx1.toml"
    cfg.write_text('[ami]\nusername = "x"\n')  # no [status] socket, as the shipped config
    by_option = cli("status", "--instance", "pbx1", "--config", str(cfg))
    by_env = cli("status", "--config", str(cfg), env={"CTI_BRIDGE_INSTANCE": "pbx1"})
    for res in (by_option, by_env):
        assert res.returncode == 3, res.stderr
        assert "/run/cti-bridge/pbx1/status.sock" in res.stderr, res.stderr
    plain = cli("status", "--config", str(cfg))
    assert plain.returncode == 3 and "/run/cti-bridge/status.sock" in plain.stderr
    # The config file's socket still wins; without --config the instance's file is read.
    cfg.write_text(f'[status]\nsocket = "{tmp_path / "s.sock"}"\n')
    res = cli("status", "--instance", "pbx1", "--config", str(cfg))
    assert res.returncode == 3 and str(tmp_path / "s.sock") in res.stderr
    res = cli("check", "--instance", "no-such-pbx")
    assert res.returncode == 2
    assert res.stderr.startswith("cti-bridge: /etc/cti-bridge/no-such-pbx.toml: "), res.stderr


def test_instance_name_that_could_leave_its_directories_is_refused() -> None:
    for name in ("../etc", "a/b", ".hidden"):
        res = cli("status", "--instance", name)
        assert res.returncode == 2, res
        assert res.stderr.count("\n") == 1 and "instance" in res.stderr, res.stderr

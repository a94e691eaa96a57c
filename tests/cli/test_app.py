"""The app itself: version, and the command tree exactly as operators and scripts use it."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.core import TyperGroup

from cti_bridge import __version__
from cti_bridge.cli import app
from tests.support.cli import cli, write_config


def test_version() -> None:
    res = cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"cti-bridge {__version__}"


def _tree(group: TyperGroup, ctx: typer.Context) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None
        if isinstance(cmd, TyperGroup):
            out[name] = _tree(cmd, typer.Context(cmd, parent=ctx))
        else:
            out[name] = sorted(opt for p in cmd.params for opt in p.opts)
    return out


def test_command_tree_is_what_operators_use() -> None:
    """Scripts, the systemd unit and the README call these names and options."""
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    assert _tree(group, typer.Context(group)) == {
        "run": ["--config", "--dry-run", "--instance", "--log-level", "--strict", "-c"],
        "demo": ["--asterisk", "--once"],
        "status": ["--config", "--instance", "--json", "--socket", "-c"],
        "check": ["--config", "--instance", "-c"],
        "send": ["--config", "-c", "event", "fields"],
        "dial-link": ["--config", "--handler", "--revoke", "-c", "ext"],
        "replay": ["--config", "-c", "traces"],
        "outbox": {
            "list": ["--config", "--dead", "--limit", "--route", "-c"],
            "retry": ["--config", "-c"],
            "purge": ["--config", "--dead-only", "--yes", "-c", "-y"],
        },
        "config": {"schema": []},
    }


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    res = cli("check", "--config", str(tmp_path / "missing.toml"))
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("cti-bridge: ")


def test_unknown_log_level_is_refused(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9/api/v1/cti/t")
    res = cli("run", "--log-level", "chatty", "--config", str(cfg))
    assert res.returncode == 2 and "--log-level" in res.stderr

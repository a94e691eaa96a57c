"""Upgrading from ``spool.sqlite3``: the daemon moves it into place and delivers what it holds."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from cti_bridge.config import parse_config
from cti_bridge.demo.zammad import FakeZammad
from cti_bridge.outbox.store import Outbox
from cti_bridge.outbox.upgrade import adopt_old_outbox, old_outbox_file
from tests.service.test_daemon import make_config, running, until
from tests.support.cli import cli, write_config
from tests.support.fake_ami import FakeAmi

EVENTS = [
    {"event": "newCall", "callId": "old-1", "direction": "in", "from": "491701", "to": "101"},
    {"event": "hangup", "callId": "old-1", "direction": "in", "cause": "cancel"},
]


def old_release_file(directory: Path) -> Path:
    """``spool.sqlite3`` as a killed daemon leaves it: the pending events still in its WAL."""
    work = directory / "writer"
    box = Outbox(work / "outbox.sqlite3", background_checkpoint=True)  # no checkpoint on commit
    box.put_many(EVENTS)
    for suffix in ("", "-wal", "-shm"):
        shutil.copy(work / f"outbox.sqlite3{suffix}", directory / f"spool.sqlite3{suffix}")
    box.close()
    shutil.rmtree(work)
    assert (directory / "spool.sqlite3-wal").stat().st_size > 0
    return directory / "spool.sqlite3"


def pending_names(path: Path) -> list[str]:
    box = Outbox(path)
    try:
        return [r.name for r in box.pending()]
    finally:
        box.close()


def test_the_old_file_and_its_wal_move_into_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = old_release_file(tmp_path)
    new = tmp_path / "outbox.sqlite3"
    caplog.set_level(logging.INFO, logger="cti_bridge")
    assert adopt_old_outbox(new) is True
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "outbox.sqlite3",
        "outbox.sqlite3-shm",
        "outbox.sqlite3-wal",
    ]
    moved = [r for r in caplog.records if "earlier release" in r.getMessage()]
    assert len(moved) == 1 and moved[0].levelno == logging.INFO
    assert str(old) in moved[0].getMessage() and str(new) in moved[0].getMessage()
    assert pending_names(new) == ["newCall", "hangup"]
    assert adopt_old_outbox(new) is False  # done once


def test_a_move_cut_short_after_the_wal_completes_on_the_next_start(tmp_path: Path) -> None:
    old = old_release_file(tmp_path)
    new = tmp_path / "outbox.sqlite3"
    for suffix in ("-shm", "-wal"):  # the order of the move: side files first
        Path(f"{old}{suffix}").rename(f"{new}{suffix}")
    assert adopt_old_outbox(new) is True
    assert not old.exists()
    assert pending_names(new) == ["newCall", "hangup"]


def test_only_the_default_name_is_taken_over_and_never_over_a_file(tmp_path: Path) -> None:
    old = old_release_file(tmp_path)
    chosen = tmp_path / "mine.sqlite3"
    assert old_outbox_file(chosen) is None and not adopt_old_outbox(chosen)
    Outbox(tmp_path / "outbox.sqlite3").close()
    assert not adopt_old_outbox(tmp_path / "outbox.sqlite3")
    assert old.exists() and pending_names(old) == ["newCall", "hangup"]
    assert old_outbox_file(tmp_path / "elsewhere" / "outbox.sqlite3") is None


async def test_the_daemon_delivers_what_the_old_file_holds(tmp_path: Path) -> None:
    old_release_file(tmp_path)
    async with FakeAmi() as ami:
        with FakeZammad() as zammad:
            cfg = parse_config(make_config(tmp_path, ami, zammad.url()))
            assert cfg.outbox.path == str(tmp_path / "outbox.sqlite3")
            async with running(cfg):
                await until(lambda: zammad.stored("old-1") == ["newCall", "hangup"])
    assert not (tmp_path / "spool.sqlite3").exists()
    assert pending_names(tmp_path / "outbox.sqlite3") == []


def test_the_cli_waits_for_the_daemon_to_move_the_old_file(tmp_path: Path) -> None:
    old = old_release_file(tmp_path)
    cfg = write_config(tmp_path, "http://127.0.0.1:9/api/v1/cti/t")
    res = cli("outbox", "list", "--config", str(cfg))
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"cti-bridge: {old} holds the outbox of an earlier release; start the daemon once to "
        "move it"
    ]
    assert not (tmp_path / "outbox.sqlite3").exists()  # nothing created in its way

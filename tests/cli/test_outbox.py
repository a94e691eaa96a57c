"""``cti-bridge outbox`` on a real outbox file."""

from __future__ import annotations

from pathlib import Path

from cti_bridge.outbox.store import Outbox
from tests.support.cli import cli, write_config


def test_outbox_list_retry_purge(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9/api/v1/cti/t")
    box = Outbox(tmp_path / "outbox.sqlite3")
    ids = box.put_many(
        [
            {"event": "newCall", "callId": "a", "direction": "in", "from": "1", "to": "2"},
            {"event": "hangup", "callId": "a", "direction": "in", "cause": "cancel"},
        ]
    )
    box.dead_letter(ids[1], "test")
    box.close()
    res = cli("outbox", "list", "--config", str(cfg))
    assert res.returncode == 0 and "1 pending event(s)" in res.stdout and "newCall" in res.stdout
    res = cli("outbox", "list", "--dead", "--config", str(cfg))
    assert "1 dead letter(s)" in res.stdout and "hangup" in res.stdout
    res = cli("outbox", "retry", "--config", str(cfg))
    assert res.returncode == 0 and res.stdout.startswith("1 ")
    res = cli("outbox", "purge", "--config", str(cfg), stdin="n\n")
    assert res.returncode == 1
    box = Outbox(tmp_path / "outbox.sqlite3")
    assert box.count() == 2
    box.close()
    res = cli("outbox", "purge", "--yes", "--config", str(cfg))
    assert res.returncode == 0 and "2 event(s) deleted" in res.stdout

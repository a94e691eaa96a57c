"""The outbox's route column: one lane per route, and files from before routes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cti_bridge.demo.zammad import call_events
from cti_bridge.events import CtiEvent
from cti_bridge.outbox.admin import list_rows
from cti_bridge.outbox.store import Outbox

# The schema of a file written before routes (pending and dead without "route").
_OLD_SCHEMA = """
CREATE TABLE pending (id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL,
    event TEXT NOT NULL, created_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT);
CREATE TABLE dead (id INTEGER PRIMARY KEY, call_id TEXT NOT NULL, event TEXT NOT NULL,
    created_at REAL NOT NULL, attempts INTEGER NOT NULL, last_error TEXT,
    reason TEXT NOT NULL, dead_at REAL NOT NULL);
INSERT INTO pending (call_id, event, created_at)
    VALUES ('old', '{"event":"newCall","callId":"old"}', 1.0);
INSERT INTO dead
    VALUES (7, 'gone', '{"event":"hangup","callId":"gone"}', 1.0, 3, 'x', 'too old', 2.0);
"""


def routed(cid: str, route: str) -> list[CtiEvent]:
    return [{**e, "_route": route} for e in call_events(cid)]


def test_a_file_from_before_routes_gets_the_column_its_rows_in_default(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(_OLD_SCHEMA)
    box = Outbox(path)
    assert [r.call_id for r in box.lane("default", others=["acme"]).pending()] == ["old"]
    assert box.lane("acme").count() == 0
    assert [r.route for r in box.pending()] == ["default"]
    assert box.lane("default").count_dead() == 1
    box.put_many(routed("a1", "acme"))
    assert box.lane("acme").count() == 3
    box.close()
    with sqlite3.connect(path) as db:
        cols = {r[1] for r in db.execute("PRAGMA table_info(dead)")}
        rows = db.execute("SELECT call_id, route FROM pending ORDER BY id").fetchall()
    assert "route" in cols
    assert rows == [("old", "default")] + [("a1", "acme")] * 3
    Outbox(path).close()  # opening again changes nothing


def test_lanes_see_only_their_rows_and_dead_letters_keep_their_route(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    box.put_many([*routed("a1", "acme"), *call_events("d1"), *routed("b1", "beta")])
    box.put_many(routed("x1", "removed"))  # a route since taken out of the config
    acme, default = box.lane("acme"), box.lane("default", others=["acme", "beta"])
    assert {r.call_id for r in acme.pending()} == {"a1"}
    assert {r.call_id for r in default.pending()} == {"d1", "x1"}
    assert acme.count() == 3 and default.count() == 6 and box.count() == 12
    first_beta = box.lane("beta").pending()[0].id
    assert acme.max_id() < first_beta
    assert not acme.none_between(0, 4) and acme.none_between(3, 100)
    assert default.none_between(3, 7) is False  # d1 is between
    box.dead_letter(call="a1", reason="refused")
    assert acme.count_dead() == 1 * 3 and default.count_dead() == 0
    assert box.retry_dead() == 3
    assert [r.route for r in acme.pending()] == ["acme"] * 3
    listing = list_rows(str(box.path), dead=False, limit=10, route="acme", routes=["acme", "beta"])
    assert listing.splitlines()[0].startswith("3 pending event(s) of route acme")
    assert "_route" not in listing
    box.close()

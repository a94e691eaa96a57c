"""Link keys, serials in the outbox (also an outbox from before the table), revoke."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from cti_bridge.config import Secret
from cti_bridge.dial.keys import LinkKeys
from cti_bridge.dial.links import handler_template, setup_url
from cti_bridge.outbox.store import Outbox

KEYS = LinkKeys(Secret("0123456789abcdef-secret"))


def test_a_key_is_valid_only_for_its_extension_serial_and_secret() -> None:
    key = KEYS.key("101", 0)
    assert KEYS.valid("101", 0, key)
    assert not KEYS.valid("102", 0, key)
    assert not KEYS.valid("101", 1, key)
    assert not LinkKeys(Secret("another-secret-of-16")).valid("101", 0, key)
    assert not KEYS.valid("101", 0, "")
    assert not KEYS.valid("101", 0, key[:-1])
    assert not KEYS.valid("101", 0, key + "A")


@given(st.text(max_size=60))
def test_no_guessed_key_of_any_shape_is_valid(guess: str) -> None:
    assert KEYS.valid("101", 0, guess) == (guess == KEYS.key("101", 0))


def test_keys_are_url_safe() -> None:
    for ext in ("101", "alice", "2.01"):
        key = KEYS.key(ext, 7)
        assert len(key) == 43 and all(c.isalnum() or c in "-_" for c in key)


def test_links_put_the_key_in_the_query_and_the_template_has_one_placeholder() -> None:
    url = setup_url("https://pbx.example/cti/", KEYS, "101", 0)
    assert url == f"https://pbx.example/cti/dial/101?key={KEYS.key('101', 0)}"
    template = handler_template("https://pbx.example/cti", KEYS, "101", 0)
    assert template.startswith("https://pbx.example/cti/dial/101/call?key=")
    assert template.endswith("&to=%s") and template.count("%s") == 1


def test_serials_start_at_zero_and_revoke_bumps_them(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as box:
        assert box.dial_serial("101") == 0
        assert box.bump_dial_serial("101") == 1
        assert box.bump_dial_serial("101") == 2
        assert box.dial_serial("102") == 0
    with Outbox(tmp_path / "o.sqlite3") as box:
        assert box.dial_serial("101") == 2  # durable


def test_a_revoke_from_a_second_connection_is_seen_at_once(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as daemon_side, Outbox(path) as cli_side:
        key = KEYS.key("101", daemon_side.dial_serial("101"))
        cli_side.bump_dial_serial("101")
        assert not KEYS.valid("101", daemon_side.dial_serial("101"), key)


def test_an_outbox_from_before_click_to_dial_gains_the_table_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE pending (id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL,"
        " event TEXT NOT NULL, created_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
        " last_error TEXT);"
        "INSERT INTO pending (call_id, event, created_at)"
        """ VALUES ('c1', '{"event":"newCall"}', 1);"""
    )
    db.commit()
    db.close()
    with Outbox(path) as box:
        assert box.count() == 1
        assert box.dial_serial("101") == 0
        assert box.bump_dial_serial("101") == 1

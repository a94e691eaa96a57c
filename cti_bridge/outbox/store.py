"""Durable outbox: every CTI event is committed here before its first delivery attempt.

SQLite in WAL mode with ``synchronous=NORMAL``: a commit survives kill -9 of the daemon (only a
power loss may drop the last few commits), and the ``cti-bridge outbox`` CLI can read and edit the
file from a second process while the daemon runs (busy timeout, short transactions).

``pending.id`` (AUTOINCREMENT, never reused) is the global order; a call's events are delivered in
id order. A row leaves ``pending`` only when Zammad answered it (``ack``) or it is moved to
``dead``. Rows moved back from ``dead`` get new ids (after everything already queued, in their old
order) and a fresh ``created_at``, so a running daemon picks them up like new events and the age
limit that sent them there does not fire again at once.

Only the CTI form fields are stored (the event JSON): never the URL, which holds the token.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cti_bridge.events import CtiEvent, call_id

BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    event TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS pending_call ON pending (call_id, id);
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL,
    event TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    reason TEXT NOT NULL,
    dead_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_call ON dead (call_id);
CREATE TABLE IF NOT EXISTS open_calls (
    call_id TEXT PRIMARY KEY,
    newcall TEXT NOT NULL,
    answered INTEGER NOT NULL DEFAULT 0,
    opened_at REAL NOT NULL
);
"""

_COLS = "id, call_id, event, created_at, attempts, last_error"


@dataclass(frozen=True)
class Row:
    id: int
    call_id: str
    event: CtiEvent
    created_at: float
    attempts: int = 0
    last_error: str | None = None

    @property
    def name(self) -> str:
        value = self.event.get("event", "")
        return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class DeadRow(Row):
    reason: str = ""
    dead_at: float = 0.0


# One encoder for every row: json.dumps with arguments builds a new JSONEncoder on each call.
_to_json = json.JSONEncoder(separators=(",", ":")).encode


def _row(r: tuple[int, str, str, float, int, str | None]) -> Row:
    return Row(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5])


class Outbox:
    """One connection to the outbox file; use from one thread (the daemon's event loop)."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        background_checkpoint: bool = False,
    ) -> None:
        """``background_checkpoint``: the owner calls :meth:`checkpoint` from a worker thread.

        SQLite otherwise checkpoints the WAL (with an fsync) inside whichever commit crosses
        1000 pages: tens of milliseconds on a busy disk, on the daemon's event loop.
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        if background_checkpoint:
            self._db.execute("PRAGMA wal_autocheckpoint = 0")
        #: Called after every committed write: the owner's checkpoint task waits for it, so an
        #: idle daemon does not wake up to checkpoint a WAL nothing was written to.
        self.on_commit: Callable[[], None] | None = None
        self._ckpt: sqlite3.Connection | None = None
        self._ckpt_lock = threading.Lock()
        self._closed = False
        with self._tx():
            for stmt in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(stmt)

    def _tx(self) -> _Tx:
        return _Tx(self._db, self.on_commit)

    def _now(self) -> float:
        return float(self._clock())

    # -- writing -----------------------------------------------------------------------------

    def put(self, event: CtiEvent) -> int:
        return self.put_many([event])[0]

    def put_many(self, events: Sequence[CtiEvent], *, acks: Sequence[int] = ()) -> list[int]:
        """Commit all events in one transaction; return their ids, in order.

        ``acks``: delivered ids to remove in the same transaction (one commit instead of two).
        """
        now = self._now()
        ids: list[int] = []
        with self._tx():
            if acks:
                self._db.executemany("DELETE FROM pending WHERE id = ?", [(i,) for i in acks])
            for event in events:
                cid = call_id(event)
                body = _to_json(event)
                cur = self._db.execute(
                    "INSERT INTO pending (call_id, event, created_at) VALUES (?, ?, ?)",
                    (cid, body, now),
                )
                ids.append(int(cur.lastrowid or 0))
                self._track_open(cid, event.get("event"), body, now)
        return ids

    def _track_open(self, cid: str, name: object, body: str, now: float) -> None:
        """Remember, in the same transaction, which calls got a newCall and no hangup yet.

        After a restart the daemon cannot see calls that ended while it was down; this table
        lets it close them (a hangup) once the PBX's channel list shows they are gone.
        """
        if name == "newCall":
            self._db.execute(
                "INSERT OR IGNORE INTO open_calls (call_id, newcall, opened_at) VALUES (?, ?, ?)",
                (cid, body, now),
            )
        elif name == "answer":
            self._db.execute("UPDATE open_calls SET answered = 1 WHERE call_id = ?", (cid,))
        elif name == "hangup":
            self._db.execute("DELETE FROM open_calls WHERE call_id = ?", (cid,))

    def open_calls(self) -> list[tuple[CtiEvent, bool]]:
        """Calls with a newCall and no hangup yet: (their newCall, answered), oldest first."""
        cur = self._db.execute("SELECT newcall, answered FROM open_calls ORDER BY opened_at")
        return [(json.loads(body), bool(answered)) for body, answered in cur.fetchall()]

    def ack(self, row_id: int) -> None:
        self._db.execute("DELETE FROM pending WHERE id = ?", (row_id,))

    def ack_many(self, row_ids: Sequence[int]) -> None:
        """Acknowledge several delivered events in one transaction."""
        with self._tx():
            self._db.executemany("DELETE FROM pending WHERE id = ?", [(i,) for i in row_ids])

    def record_failure(self, row_id: int, error: str) -> None:
        self._db.execute(
            "UPDATE pending SET attempts = attempts + 1, last_error = ? WHERE id = ?",
            (error[:500], row_id),
        )

    def dead_letter(
        self, row_id: int | None = None, reason: str = "", *, call: str | None = None
    ) -> list[int]:
        """Move one row, or every pending row of ``call``, to the dead-letter table."""
        if (row_id is None) == (call is None):
            raise ValueError("give exactly one of row_id or call")
        where, arg = ("id = ?", row_id) if row_id is not None else ("call_id = ?", call)
        with self._tx():
            ids = [r[0] for r in self._db.execute(f"SELECT id FROM pending WHERE {where}", (arg,))]
            self._db.execute(
                f"INSERT INTO dead ({_COLS}, reason, dead_at) "
                f"SELECT {_COLS}, ?, ? FROM pending WHERE {where}",
                (reason[:500], self._now(), arg),
            )
            self._db.execute(f"DELETE FROM pending WHERE {where}", (arg,))
        return ids

    def retry_dead(self, ids: Iterable[int] | None = None) -> int:
        """Move dead rows (all when ``ids`` is None) back to pending, after everything queued."""
        now = self._now()
        with self._tx():
            if ids is None:
                rows = self._db.execute(
                    "SELECT id, call_id, event FROM dead ORDER BY id"
                ).fetchall()
            else:
                wanted = sorted(set(ids))
                rows = [
                    r
                    for i in wanted
                    for r in self._db.execute(
                        "SELECT id, call_id, event FROM dead WHERE id = ?", (i,)
                    )
                ]
            for rid, cid, event in rows:
                self._db.execute(
                    "INSERT INTO pending (call_id, event, created_at) VALUES (?, ?, ?)",
                    (cid, event, now),
                )
                self._db.execute("DELETE FROM dead WHERE id = ?", (rid,))
        return len(rows)

    def purge(self, dead_only: bool = True) -> int:
        with self._tx():
            n = self._db.execute("DELETE FROM dead").rowcount
            if not dead_only:
                n += self._db.execute("DELETE FROM pending").rowcount
                self._db.execute("DELETE FROM open_calls")
        return n

    # -- reading -----------------------------------------------------------------------------

    def pending(self, limit: int = 1000, *, after: int = 0) -> list[Row]:
        cur = self._db.execute(
            f"SELECT {_COLS} FROM pending WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
        )
        return [_row(r) for r in cur]

    def pending_for_call(self, call: str) -> list[Row]:
        cur = self._db.execute(
            f"SELECT {_COLS} FROM pending WHERE call_id = ? ORDER BY id", (call,)
        )
        return [_row(r) for r in cur]

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM pending").fetchone()[0])

    def count_dead(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM dead").fetchone()[0])

    def max_id(self) -> int:
        return int(self._db.execute("SELECT coalesce(max(id), 0) FROM pending").fetchone()[0])

    def oldest_age(self, now: float | None = None) -> float | None:
        oldest = self._db.execute("SELECT min(created_at) FROM pending").fetchone()[0]
        if oldest is None:
            return None
        return max(0.0, (self._now() if now is None else now) - float(oldest))

    def list_dead(self, limit: int = 100) -> list[DeadRow]:
        cur = self._db.execute(
            f"SELECT {_COLS}, reason, dead_at FROM dead ORDER BY id LIMIT ?", (limit,)
        )
        return [
            DeadRow(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], reason=r[6], dead_at=r[7])
            for r in cur
        ]

    def checkpoint(self) -> None:
        """Copy the WAL back into the database file; safe to run in a worker thread.

        PASSIVE never waits for, nor blocks, the daemon's readers and writers. The lock keeps
        close() from closing the connection under a running checkpoint.
        """
        with self._ckpt_lock:
            if self._closed:
                return
            if self._ckpt is None:
                self._ckpt = sqlite3.connect(
                    str(self.path),
                    timeout=BUSY_TIMEOUT_S,
                    isolation_level=None,
                    check_same_thread=False,
                )
            self._ckpt.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        with self._ckpt_lock:
            self._closed = True
            if self._ckpt is not None:
                self._ckpt.close()
                self._ckpt = None
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT: take the write lock up front so a busy wait cannot deadlock."""

    def __init__(self, db: sqlite3.Connection, on_commit: Callable[[], None] | None) -> None:
        self._db = db
        self._on_commit = on_commit

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        if exc_type is None and self._on_commit is not None:
            self._on_commit()

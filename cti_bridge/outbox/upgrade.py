"""The outbox file of earlier releases, ``spool.sqlite3``, taken over at the daemon's start.

The default file is ``outbox.sqlite3`` in the state directory; earlier releases called it
``spool.sqlite3``. When the configured file is that default name, does not exist yet, and the
old file lies beside it, the daemon moves the old file (with its WAL) into place before it opens
the outbox, so the events it still holds are delivered and its open calls closed. A path the
operator chose for themselves is never touched.

The CLI does not move files (a daemon of the earlier release may still hold them open); it
refuses to act until the daemon has started once, or it would create an empty outbox in the
way and strand the old one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("cti_bridge.outbox")

OLD_NAME = "spool.sqlite3"
NEW_NAME = "outbox.sqlite3"
# The side files go first and the database last. Until the database itself has moved, the old
# name is still there and the next start completes the move; and SQLite never finds the new
# database without the WAL that holds its last commits.
_SIDE_FILES = ("-shm", "-wal")


def old_outbox_file(path: str | os.PathLike[str]) -> Path | None:
    """The earlier release's file to take over for ``path``, or None when there is nothing to do."""
    new = Path(path)
    old = new.with_name(OLD_NAME)
    if new.name != NEW_NAME or new.exists() or not old.exists():
        return None
    return old


def adopt_old_outbox(path: str | os.PathLike[str]) -> bool:
    """Move ``spool.sqlite3`` (and its ``-wal``/``-shm``) to ``path``; True if it did."""
    old = old_outbox_file(path)
    if old is None:
        return False
    new = Path(path)
    for suffix in _SIDE_FILES:
        side = Path(f"{old}{suffix}")
        if side.exists():
            os.replace(side, f"{new}{suffix}")
    _sync_dir(new.parent)  # the WAL's new name is on disk before the database moves
    os.replace(old, new)
    _sync_dir(new.parent)
    log.info("outbox of an earlier release moved: %s -> %s", old, new)
    return True


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

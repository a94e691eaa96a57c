"""``cti-bridge outbox``: look at and act on the outbox, also while the daemon runs."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from cti_bridge.events import ROUTE_KEY
from cti_bridge.outbox.store import Outbox


def _age(created: float) -> str:
    seconds = max(0.0, time.time() - created)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def list_rows(
    path: str,
    *,
    dead: bool,
    limit: int,
    route: str | None = None,
    routes: Sequence[str] = (),
) -> str:
    """The outbox's rows, or one route's (``routes``: the configured names, so that
    ``default`` also shows rows of a route since removed, as the daemon delivers them)."""
    base = Outbox(path)
    box = base if route is None else base.lane(route, others=routes)
    try:
        total = box.count_dead() if dead else box.count()
        rows = box.list_dead(limit) if dead else box.pending(limit)
        of = f" of route {route}" if route is not None else ""
        lines = [f"{total} {'dead letter(s)' if dead else 'pending event(s)'}{of} in {path}"]
        for row in rows:
            fields = {k: v for k, v in row.event.items() if k not in ("event", "callId")}
            fields.pop(ROUTE_KEY, None)
            reason = getattr(row, "reason", "")
            extra = f"  [{reason}]" if dead and reason else ""
            where = f"{row.route:<12} " if routes else ""
            lines.append(
                f"{row.id:>8}  {_age(row.created_at):>6}  {where}{row.call_id:<24} "
                f"{row.event.get('event', '?'):<8} {json.dumps(fields, ensure_ascii=False)}{extra}"
            )
        return "\n".join(lines)
    finally:
        base.close()


def retry_dead(path: str) -> str:
    box = Outbox(path)
    try:
        n = box.retry_dead()
        return f"{n} dead letter(s) moved back to the outbox; the daemon will post them"
    finally:
        box.close()


def purge(path: str, *, dead_only: bool) -> str:
    box = Outbox(path)
    try:
        n = box.purge(dead_only=dead_only)
        return f"{n} event(s) deleted"
    finally:
        box.close()

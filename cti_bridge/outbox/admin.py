"""``cti-bridge outbox``: look at and act on the outbox, also while the daemon runs."""

from __future__ import annotations

import json
import time

from cti_bridge.outbox.store import Outbox


def _age(created: float) -> str:
    seconds = max(0.0, time.time() - created)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def list_rows(path: str, *, dead: bool, limit: int) -> str:
    box = Outbox(path)
    try:
        total = box.count_dead() if dead else box.count()
        rows = box.list_dead(limit) if dead else box.pending(limit)
        lines = [f"{total} {'dead letter(s)' if dead else 'pending event(s)'} in {path}"]
        for row in rows:
            fields = {k: v for k, v in row.event.items() if k not in ("event", "callId")}
            reason = getattr(row, "reason", "")
            extra = f"  [{reason}]" if dead and reason else ""
            lines.append(
                f"{row.id:>8}  {_age(row.created_at):>6}  {row.call_id:<24} "
                f"{row.event.get('event', '?'):<8} {json.dumps(fields, ensure_ascii=False)}{extra}"
            )
        return "\n".join(lines)
    finally:
        box.close()


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

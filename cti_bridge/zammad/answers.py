"""Zammad's answer to one post, read into a typed :class:`ZammadAnswer` or a :class:`ZammadError`.

Why the details (docs/zammad-cti.md#5-status-codes-and-error-bodies, #7-answers-reject-and-dial):

- Zammad's own ``error`` text is kept only from its JSON error body: the delivery policy tells
  a Rails answer (it ran the request) from an HTML page of something in front of it by it.
- A 3xx is never followed (see the client): it means a wrong URL, a configuration error.
- A 200 is delivered whatever its body holds; an unusable ``dial`` caller ID or an unknown
  action is ignored with a warning, never applied to a call.
- The dial answer's key is ``caller_id``; ``callerId`` (the API document's example) is read too.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cti_bridge.config import redact_url
from cti_bridge.zammad.errors import (
    TRANSIENT_STATUSES,
    ZammadRejected,
    ZammadUnavailable,
    one_line,
    scrub,
)

log = logging.getLogger(__name__)

CALLER_ID_RE = re.compile(r"\+?[0-9]{1,20}")
_NUMBER_RE = re.compile(r"\+?[0-9*#]{1,40}")

WarnOnce = Callable[[str, str], None]
"""``warn_once(key, message)``: a warning the first time per key, then debug lines."""


@dataclass(frozen=True)
class ZammadAnswer:
    """What Zammad told the PBX to do; ``none`` also covers unreadable 200 answers."""

    action: Literal["none", "reject", "dial"]
    caller_id: str | None = None
    number: str | None = None
    reason: str | None = None


NO_ACTION = ZammadAnswer("none")


def _warn(key: str, message: str) -> None:
    log.warning("%s", message)


def interpret(
    status: int, location: str | None, raw: bytes, warn_once: WarnOnce = _warn
) -> ZammadAnswer:
    """The answer to a 2xx; raise the matching ZammadError for anything else."""
    doc = _json(raw)
    if 200 <= status < 300:
        return _answer(doc, warn_once)
    if 300 <= status < 400:
        where = scrub(redact_url(location)) if location else "nowhere"
        raise ZammadRejected(
            f"HTTP {status} redirect to {where} (not followed: check the URL)",
            status_code=status,
        )
    error = (
        one_line(doc["error"])
        if isinstance(doc, dict) and isinstance(doc.get("error"), str)
        else None
    )
    reason = f"HTTP {status}: {error}" if error else f"HTTP {status} (no Zammad error body)"
    if status in TRANSIENT_STATUSES or status >= 500:
        raise ZammadUnavailable(reason, status_code=status, error=error)
    raise ZammadRejected(reason, status_code=status, error=error)


def _answer(doc: object, warn_once: WarnOnce) -> ZammadAnswer:
    if not isinstance(doc, dict):
        kind = "not JSON" if doc is _NOT_JSON else f"a JSON {type(doc).__name__}"
        warn_once(kind, f"Zammad answered 200 with a body that is {kind}; counted as delivered")
        return NO_ACTION
    action = doc.get("action")
    if action is None:
        return NO_ACTION
    if action == "reject":
        reason = doc.get("reason")
        return ZammadAnswer(
            "reject", reason=one_line(reason, 40) if isinstance(reason, str) else None
        )
    if action == "dial":
        caller_id = doc.get("caller_id", doc.get("callerId"))
        number = doc.get("number")
        if not isinstance(caller_id, str) or not CALLER_ID_RE.fullmatch(caller_id):
            shown = repr(caller_id)[:60]
            log.warning("Zammad's dial answer has an unusable caller_id %s: ignored", shown)
            return NO_ACTION
        if not isinstance(number, str) or not _NUMBER_RE.fullmatch(number):
            number = None
        return ZammadAnswer("dial", caller_id=caller_id, number=number)
    warn_once("action", f"Zammad answered an unknown action {repr(action)[:40]}; ignored")
    return NO_ACTION


_NOT_JSON = object()


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, ValueError):
        return _NOT_JSON

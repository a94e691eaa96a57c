"""The CTI event as it travels from the tracker through the outbox to Zammad.

A CTI event is a plain dict of Zammad's form fields (``event``, ``callId``, ``direction``,
``from``, ``to``, ``user[]``, ``user``, ``answeringNumber``, ``queue``, ``cause``): exactly what is
posted, JSON-serialisable for the outbox, and what ``cti-bridge replay`` prints. Values are
strings, except ``user[]`` which is a list of strings (one form field per name).

Keys that start with ``_`` are the bridge's own and never posted: ``_route`` names the
``[[route]]`` a call was given when its newCall was decided (absent: ``[zammad]``).
"""

from __future__ import annotations

from typing import TypeAlias

from cti_bridge.causes import ZammadCause

CtiEvent: TypeAlias = dict[str, "str | list[str]"]

EVENT_NAMES = ("newCall", "answer", "hangup")
CAUSES = tuple(c.value for c in ZammadCause)
ROUTE_KEY = "_route"
DEFAULT_ROUTE = "default"
"""The route name of ``[zammad]``: calls that match no ``[[route]]`` (and rows from before)."""


def form_items(event: CtiEvent) -> list[tuple[str, str]]:
    """Flatten an event into form pairs: ``user[]`` repeats once per name, in order."""
    items: list[tuple[str, str]] = []
    for key, value in event.items():
        if key[:1] == "_":  # the bridge's own (ROUTE_KEY): not a form field
            continue
        if isinstance(value, list):
            items.extend((key, str(v)) for v in value)
        else:
            items.append((key, str(value)))
    return items


def route_of(event: CtiEvent) -> str:
    """The event's ``[[route]]`` name; "" for ``[zammad]``."""
    value = event.get(ROUTE_KEY, "")
    return value if isinstance(value, str) else ""


def call_id(event: CtiEvent) -> str:
    value = event.get("callId", "")
    return value if isinstance(value, str) else ""

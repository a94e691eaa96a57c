"""``/calls``: the caller log of the bridge, live, read-only.

The page lists the calls of :class:`~cti_bridge.service.recent.RecentCalls` (newest first) in
the columns of Zammad's caller log, with Zammad's answer and the delivery state next to them.
It is rendered complete on the server (it reads fine without scripts) and then kept current by
server-sent events from ``/calls/events``: one ``data:`` line with every row after each change,
a comment line as keep-alive. No external asset: the style and the script are inline, allowed
by a per-response nonce in the page's own Content-Security-Policy. Rows go into the DOM as
text only (``textContent``), and nothing on the page is secret (numbers, user names, causes).

The web server cancels open requests two seconds into a stop; the daemon closes the caller log
first (:meth:`RecentCalls.close`), which ends every stream at once.
"""

from __future__ import annotations

import asyncio
import html
import json
import secrets
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, StreamingResponse
from starlette.routing import BaseRoute, Route

from cti_bridge.service.recent import RecentCalls

KEEPALIVE_S = 15.0  # a comment line so proxies do not close an idle stream
COALESCE_S = 0.2  # changes within this span go out as one event (a busy PBX changes often)

COLUMNS: tuple[tuple[str, str], ...] = (
    ("direction", "Direction"),
    ("from", "From"),
    ("to", "To"),
    ("users", "Users"),
    ("queue", "Queue"),
    ("state", "State"),
    ("cause", "Cause"),
    ("waiting_s", "Waiting time"),
    ("talking_s", "Talking time"),
    ("zammad", "Zammad's answer"),
    ("delivery", "Delivery"),
)


def cell(row: Mapping[str, Any], key: str) -> str:
    """The text of one cell (the page's script formats the same way)."""
    value = row.get(key)
    if value is None or value == "":
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if key.endswith("_s"):
        return f"{float(value):.0f} s"
    return str(value)


def _table_body(rows: list[dict[str, Any]]) -> str:
    out = []
    for row in rows:
        cells = "".join(f"<td>{html.escape(cell(row, key))}</td>" for key, _ in COLUMNS)
        out.append(f'<tr class="{html.escape(str(row.get("delivery", "")))}">{cells}</tr>')
    return "\n".join(out)


_SCRIPT = """
const keys = %s;
function text(row, key) {
  const v = row[key];
  if (v === null || v === undefined || v === "") return "";
  if (Array.isArray(v)) return v.join(", ");
  if (key.endsWith("_s")) return Math.round(v) + " s";
  return String(v);
}
const body = document.getElementById("calls");
const stateLine = document.getElementById("live");
const source = new EventSource("calls/events");
source.onopen = () => { stateLine.textContent = "live"; };
source.onerror = () => { stateLine.textContent = "reconnecting..."; };
source.onmessage = (msg) => {
  const rows = JSON.parse(msg.data);
  const fresh = document.createDocumentFragment();
  for (const row of rows) {
    const tr = document.createElement("tr");
    tr.className = String(row.delivery || "");
    tr.dataset.callId = String(row.call_id || "");
    for (const key of keys) {
      const td = document.createElement("td");
      td.textContent = text(row, key);
      tr.appendChild(td);
    }
    fresh.appendChild(tr);
  }
  body.replaceChildren(fresh);
};
"""

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid #ccc; padding: .25em .6em; text-align: left; }
tr.dead td { color: #a00; } tr.waiting td { color: #a60; } tr.dry.run td { color: #555; }
#live { color: #666; font-size: .9em; }
"""


def render_page(rows: list[dict[str, Any]], nonce: str) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in COLUMNS)
    script = _SCRIPT % json.dumps([key for key, _ in COLUMNS])
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        "<title>cti-bridge: calls</title>"
        f'<style nonce="{nonce}">{_STYLE}</style></head><body>'
        '<h1>Calls</h1><p id="live">not live (scripts off): reload to refresh</p>'
        f"<table><thead><tr>{head}</tr></thead>"
        f'<tbody id="calls">{_table_body(rows)}</tbody></table>'
        f'<script nonce="{nonce}">{script}</script></body></html>\n'
    )


def page_csp(nonce: str) -> str:
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def calls_routes(recent: RecentCalls) -> list[BaseRoute]:
    """``/calls`` (the page) and ``/calls/events`` (its live stream), for ``create_app``."""

    async def page(request: Request) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        return HTMLResponse(
            render_page(recent.rows(), nonce),
            headers={"content-security-policy": page_csp(nonce)},
        )

    async def events(request: Request) -> StreamingResponse:
        return StreamingResponse(
            stream(recent),
            media_type="text/event-stream",
            headers={"x-accel-buffering": "no"},  # nginx: pass each event on at once
        )

    return [
        Route("/calls", page, methods=["GET"]),
        Route("/calls/events", events, methods=["GET"]),
    ]


async def stream(recent: RecentCalls, keepalive: float = KEEPALIVE_S) -> AsyncIterator[str]:
    """Every row now, then again after each change, until the caller log closes.

    A cancelled request (client gone, server stopping) raises CancelledError at the await: the
    generator just ends, nothing to clean up.
    """
    yield _data(recent.rows())
    while not recent.closed:
        if await recent.changed(keepalive):
            await asyncio.sleep(COALESCE_S)
            yield _data(recent.rows())
        elif not recent.closed:
            yield ": keep-alive\n\n"


def _data(rows: list[dict[str, Any]]) -> str:
    return f"data: {json.dumps(rows, ensure_ascii=False, separators=(',', ':'))}\n\n"

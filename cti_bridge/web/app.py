"""The ASGI application: routes, security headers and an access log without query strings.

A later feature adds its pages by passing routes to :func:`create_app`; a route reaches the
daemon's parts through what it closes over, or through ``request.app.state.daemon`` (the
:class:`DaemonView`). Every response gets the headers of :data:`SECURITY_HEADERS` unless the
route set its own value (a page with scripts sets its own Content-Security-Policy).

The access log is ours, not uvicorn's: uvicorn's access line carries the full request line,
query string included, and the click-to-dial links carry their key in the query string. This
one logs method, path and status at DEBUG, never the query.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from prometheus_client import CollectorRegistry, make_asgi_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

HealthProbe = Callable[[], Mapping[str, bool]]
"""Part name -> healthy; cheap, called per /healthz request (e.g. {"ami": True, "outbox": True})."""

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    # Links with a key in the query string must not leak it to the next site.
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)


@dataclass(frozen=True)
class DaemonView:
    """What the web routes may see of the daemon.

    ``snapshot`` is the status document (``cti-bridge status --json``), ``registry`` the
    Prometheus registry behind /metrics, ``health`` the probe behind /healthz.
    """

    snapshot: Callable[[], Mapping[str, Any]]
    registry: CollectorRegistry
    health: HealthProbe


class _AsgiEndpoint:
    """A plain ASGI app as a Route endpoint (Starlette would call a bare function with a
    Request instead)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def health_document(checks: Mapping[str, bool]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body): 200 when every part is healthy, else 503 naming the failing parts."""
    failing = sorted(name for name, ok in checks.items() if not ok)
    body: dict[str, Any] = {
        "status": "fail" if failing else "ok",
        "checks": {name: "ok" if ok else "fail" for name, ok in sorted(checks.items())},
    }
    if failing:
        body["failing"] = failing
    return (503 if failing else 200), body


def create_app(view: DaemonView, routes: Sequence[BaseRoute] = ()) -> ASGIApp:
    """The application: /metrics, /healthz, then ``routes``; 404 for anything else."""

    async def healthz(request: Request) -> JSONResponse:
        status, body = health_document(view.health())
        return JSONResponse(body, status_code=status)

    app = Starlette(
        routes=[
            Route(
                "/metrics", _AsgiEndpoint(make_asgi_app(registry=view.registry)), methods=["GET"]
            ),
            Route("/healthz", healthz, methods=["GET"]),
            *routes,
        ]
    )
    app.state.daemon = view
    return Guard(app)


class Guard:
    """Pure ASGI middleware (streams pass through untouched): security headers, a Date
    header, and one DEBUG line per request without the query string."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = _with_defaults(message.get("headers", ()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            log.debug(
                "%s %s %s %.1f ms",
                scope.get("method", "?"),
                scope.get("path", "?"),
                status or "-",
                (time.monotonic() - started) * 1000,
            )


def _with_defaults(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    out = list(headers)
    present = {name.lower() for name, _ in out}
    out += [(name, value) for name, value in SECURITY_HEADERS if name not in present]
    if b"date" not in present:
        out.append((b"date", formatdate(usegmt=True).encode()))
    return out

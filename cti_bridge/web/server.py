"""Serve the web app with uvicorn inside the daemon's event loop.

``uvicorn.Server.serve()`` is not used: it installs its own SIGINT/SIGTERM handlers (the
daemon owns those), calls ``sys.exit`` when the port is taken, and wakes the loop ten times a
second in its main loop. ``startup()``/``shutdown()`` with a socket bound here give the same
server without any of that: a bind or certificate problem is an ``OSError`` with one line, and
an idle listener costs no wake-ups.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from cti_bridge.config import WebConfig, split_listen

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 2  # seconds open requests get at stop (uvicorn wants an int)


class WebServer:
    """One listener for ``[web]``: ``start()``, ``stop()``, and the bound ``address``."""

    def __init__(self, cfg: WebConfig, app: ASGIApp) -> None:
        self.cfg = cfg
        self._app = app
        self._server: uvicorn.Server | None = None
        self._sock: socket.socket | None = None

    async def start(self) -> None:
        host, port = split_listen(self.cfg.listen)
        config = uvicorn.Config(
            self._app,
            http="h11",
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,  # its line has the query string: Guard logs without it
            server_header=False,
            date_header=False,  # Guard adds Date (uvicorn refreshes its own in serve()'s loop)
            ssl_certfile=self.cfg.tls_cert,
            ssl_keyfile=self.cfg.tls_key,
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
        )
        # uvicorn 0.54's h11 protocol logs access lines whenever "uvicorn.access" has a
        # handler, whatever access_log says (access_log=False only strips the handlers once, in
        # Config()); a logging setup that attaches one later (pytest's caplog does) would log
        # every query string, dial keys included. Disabled, the logger drops every record.
        logging.getLogger("uvicorn.access").disabled = True
        try:
            config.load()
        except (OSError, ssl.SSLError) as exc:
            raise OSError(f"[web] tls_cert/tls_key: cannot load: {_reason(exc)}") from None
        self._sock = await _bind(host, port, self.cfg.listen)
        server = uvicorn.Server(config)
        # What serve() sets up before its startup(); "off": no lifespan task to run or stop.
        server.lifespan = config.lifespan_class(config)
        try:
            await server.startup(sockets=[self._sock])
        except BaseException:
            self._sock.close()
            self._sock = None
            raise
        self._server = server
        log.info("web listener on %s (/metrics, /healthz, /calls)", self.url)

    async def stop(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        await server.shutdown(sockets=[self._sock] if self._sock else None)
        self._sock = None

    @property
    def address(self) -> tuple[str, int]:
        if self._sock is None:
            raise RuntimeError("web listener not started")
        name = self._sock.getsockname()
        return str(name[0]), int(name[1])

    @property
    def url(self) -> str:
        host, port = self.address
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.cfg.tls else 'http'}://{host}:{port}"

    def snapshot(self) -> dict[str, Any]:
        """The ``web`` part of the status document."""
        if self._sock is None:
            return {"enabled": False}
        return {"url": self.url, "tls": self.cfg.tls, "public_url": self.cfg.public_url}


async def _bind(host: str, port: int, listen: str) -> socket.socket:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, address = infos[0]
        # proto must be IPPROTO_TCP (socket.create_server leaves it 0): asyncio sets TCP_NODELAY
        # only on such sockets, and without it a keep-alive request waits 40 ms for delayed ACKs.
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise OSError(f"[web] listen {listen}: {_reason(exc)}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(f"[web] listen {listen}: {_reason(exc)}") from None
    return sock


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc)

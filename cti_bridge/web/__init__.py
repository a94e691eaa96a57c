"""The daemon's HTTP listener (``[web] listen``): ``/metrics``, ``/healthz`` and later pages.

Starlette routes served by uvicorn on the daemon's own event loop: no thread, no second loop,
and no signal handlers of uvicorn's (the daemon owns SIGTERM). ``app.create_app`` builds the
application from a :class:`~cti_bridge.web.app.DaemonView` plus any extra routes;
``server.WebServer`` binds it to the configured address and stops it in the daemon's shutdown.
"""

from cti_bridge.web.app import DaemonView, HealthProbe, create_app
from cti_bridge.web.server import WebServer

__all__ = ["DaemonView", "HealthProbe", "WebServer", "create_app"]

"""The click-to-dial URLs on the web listener.

=============================  =====================================================
``/dial/{ext}?key=K``          the agent's setup page (registers the ``tel:`` handler)
``/dial/{ext}/call?key=K&to=``  the handler: ``to`` is the ``tel:`` URL; an HTML page, or
                               JSON when the request accepts ``application/json``
``/dial/{ext}/outcome/{id}``   JSON state of one dial, polled by the pages (no key)
=============================  =====================================================

A missing or wrong key is a 403 before anything else; the key is only ever in the query
string, which no log line of the listener contains.
"""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from cti_bridge.dial.pages import dialled_page, setup_page
from cti_bridge.dial.service import DialReply, DialService

INVALID_LINK = "This dial link is not valid (revoked or mistyped). Ask for your current link."


def dial_routes(service: DialService) -> list[BaseRoute]:
    def authorised(request: Request) -> str | None:
        ext = request.path_params["ext"]
        key = request.query_params.get("key", "")
        return ext if key and service.key_valid(ext, key) else None

    async def setup(request: Request) -> Response:
        ext = authorised(request)
        if ext is None:
            return PlainTextResponse(INVALID_LINK, status_code=403)
        return setup_page(ext, service.link_key(ext))

    async def call(request: Request) -> Response:
        wants_json = "application/json" in request.headers.get("accept", "")
        ext = authorised(request)
        if ext is None:
            if wants_json:
                return JSONResponse({"message": INVALID_LINK}, status_code=403)
            return dialled_page(INVALID_LINK, None, "refused", 403)
        reply = await service.place(ext, request.query_params.get("to", ""))
        return _json_reply(reply) if wants_json else _html_reply(reply)

    async def outcome(request: Request) -> Response:
        attempt = service.attempts.get(request.path_params["attempt"])
        if attempt is None or attempt.ext != request.path_params["ext"]:
            return JSONResponse({"message": "unknown"}, status_code=404)
        return JSONResponse(
            {"state": attempt.state, "final": attempt.state.final, "message": attempt.message}
        )

    return [
        Route("/dial/{ext}", setup, methods=["GET"]),
        Route("/dial/{ext}/call", call, methods=["GET"]),
        Route("/dial/{ext}/outcome/{attempt}", outcome, methods=["GET"]),
    ]


def _status(reply: DialReply) -> int:
    return 200 if reply.refusal is None else int(reply.refusal)


def _retry_headers(reply: DialReply) -> dict[str, str]:
    return {"retry-after": str(math.ceil(reply.retry_after))} if reply.retry_after else {}


def _json_reply(reply: DialReply) -> Response:
    body = {"message": reply.message, "attempt": reply.attempt.id if reply.attempt else None}
    return JSONResponse(body, status_code=_status(reply), headers=_retry_headers(reply))


def _html_reply(reply: DialReply) -> Response:
    attempt = reply.attempt
    state = attempt.state.value if attempt else "refused"
    page = dialled_page(reply.message, attempt.id if attempt else None, state, _status(reply))
    page.headers.update(_retry_headers(reply))
    return page

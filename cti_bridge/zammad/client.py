"""HTTP client for Zammad's Generic CTI endpoint (``POST /api/v1/cti/<token>``).

One ``httpx.AsyncClient`` (one keep-alive pool) per :class:`ZammadClient` posts form-encoded
events and turns every outcome into either a typed :class:`ZammadAnswer` (``answers``) or a
precise :class:`ZammadError` (``errors``), so the delivery policy can decide what is safe to
repeat (``policy``). Facts about Zammad's answers:
docs/zammad-cti.md#5-status-codes-and-error-bodies.

Why the details:
- ``Accept: application/json``: without it Rails answers errors with its HTML 500 page.
- Redirects are not followed: Zammad never redirects this route, so a 3xx means a wrong URL
  (http->https, a login page); following it could post the call log somewhere else.
- Only the first ``MAX_BODY`` bytes of an answer are read (streamed, then the connection is
  closed, not pooled): a hostile or broken server cannot make the daemon buffer megabytes;
  ``Accept-Encoding: identity`` and raw reads keep that cap honest (no gzip bomb).
- No cookies: the token in the URL is the only credential; a Rails session must not ride along.
- Never sent twice: httpcore resends a request only when its pooled connection turned out busy
  or closed *before* anything was written (``ConnectionNotAvailable``); a failure after that is
  raised, and mapped to ``maybe_processed=True`` (``errors.unavailable``). Zammad's call log is
  not idempotent (docs/zammad-cti.md#6-not-idempotent-duplicates-order-retries).
- The token is the URL's last path segment: it is registered for scrubbing (``errors``), and
  no message built here contains the URL or the token.
- Proxies: ``[zammad] proxy`` when set, else ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` from
  the environment (``trust_env``). HTTP/1.1 only (httpx's HTTP/2 stays off).
"""

from __future__ import annotations

import contextlib
import functools
import http.cookiejar
import logging
import ssl
import urllib.request
from collections.abc import AsyncGenerator
from typing import cast
from urllib.parse import quote_plus

import certifi
import httpx

from cti_bridge.config import ZammadConfig
from cti_bridge.events import CtiEvent, form_items
from cti_bridge.zammad.answers import ZammadAnswer, interpret
from cti_bridge.zammad.errors import (
    ZammadError,
    ZammadRejected,
    remember_token,
    unavailable,
)

__all__ = [  # ZammadError: cli/app.py imports it from here
    "CHECK_EVENT",
    "MAX_BODY",
    "ZammadClient",
    "ZammadError",
    "check_endpoint",
    "form_body",
    "send_once",
    "tls_context",
]

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


def tls_context(cfg: ZammadConfig) -> ssl.SSLContext:
    """The system's CA store by default, where an operator installs a company CA.

    httpx alone would use certifi's bundle; certifi only when the system store looks empty (a
    minimal container without the ca-certificates package). A store that only names a
    directory loads lazily and looks empty too, which costs nothing worse than certifi's
    public CAs. ``ca_bundle`` replaces both; ``verify_tls = false`` checks nothing.
    """
    if cfg.ca_bundle:
        return ssl.create_default_context(cafile=cfg.ca_bundle)
    ctx = ssl.create_default_context()
    if not ctx.cert_store_stats()["x509_ca"]:
        ctx = ssl.create_default_context(cafile=certifi.where())
    if not cfg.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _RefuseCookies(http.cookiejar.CookiePolicy):
    """Keeps no cookie and sends none: the token is the only credential."""

    netscape = True
    rfc2965 = False
    hide_cookie2 = True

    def set_ok(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: urllib.request.Request) -> bool:
        return False

    def path_return_ok(self, path: str, request: urllib.request.Request) -> bool:
        return False


# httpx logs every request with its URL at INFO and httpcore the peer at DEBUG: the URL holds
# the token, so their lines stay off whatever level the daemon runs at.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)

# Field names and most values (event, direction, cause, numbers of busy lines) repeat all day:
# quoting each once is a measurable share of a POST's CPU.
_quote = functools.lru_cache(maxsize=8192)(quote_plus)


def form_body(event: CtiEvent) -> str:
    """The form-encoded body, ``user[]`` repeated once per name (as urlencode would)."""
    return "&".join(f"{_quote(k)}={_quote(v)}" for k, v in form_items(event))


def _target(url: str) -> httpx.URL | None:
    """The URL parsed once (httpx would parse it on every request), None if unusable."""
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL:
        return None
    port_ok = target.port is None or 0 < target.port < 65536  # httpx lets 99999 through
    return target if target.scheme in ("http", "https") and target.host and port_ok else None


def _client(cfg: ZammadConfig, size: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        headers={
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "cti-bridge",
        },
        cookies=http.cookiejar.CookieJar(policy=_RefuseCookies()),
        verify=tls_context(cfg),
        timeout=httpx.Timeout(
            connect=cfg.timeout, read=cfg.timeout, write=cfg.timeout, pool=cfg.timeout
        ),
        limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
        follow_redirects=False,
        trust_env=True,  # HTTPS_PROXY/NO_PROXY; an explicit proxy replaces them all
        proxy=cfg.proxy.get() if cfg.proxy is not None else None,
    )


class ZammadClient:
    """Posts CTI events; safe to share between tasks (one httpx connection pool)."""

    def __init__(self, cfg: ZammadConfig, *, max_connections: int | None = None) -> None:
        self._cfg = cfg
        self._url = cfg.url.get()
        remember_token(self._url)
        self._http: httpx.AsyncClient | None = None
        self._unusable = ""
        self._warned: set[str] = set()
        self._target = _target(self._url)
        if self._target is None:
            self._unusable = "unusable URL: expected http(s)://host[:port]/api/v1/cti/<token>"
            return
        try:
            self._http = _client(cfg, max_connections or cfg.concurrency + 4)
        except (ValueError, ImportError, httpx.InvalidURL) as exc:
            # A hand-made config or an odd *_PROXY variable (SOCKS needs an extra package).
            # httpx's texts may echo the proxy URL with its password: only the kind is shown.
            self._unusable = f"unusable proxy setting ({type(exc).__name__})"

    @property
    def display_url(self) -> str:
        return self._cfg.display_url

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def __aenter__(self) -> ZammadClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def post(self, event: CtiEvent) -> ZammadAnswer:
        """Post one event; return Zammad's answer or raise a ZammadError subclass."""
        if self._http is None or self._target is None:
            raise ZammadRejected(self._unusable)
        body = form_body(event).encode("ascii")  # quote_plus leaves only ASCII
        try:
            async with self._http.stream("POST", self._target, content=body) as resp:
                raw = await _read_capped(resp)
        except httpx.TransportError as exc:
            raise unavailable(exc, self._cfg.proxy is not None) from None
        status = resp.status_code
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s of call %r: HTTP %d", event.get("event"), event.get("callId"), status)
        return interpret(status, resp.headers.get("location"), raw, self._warn_once)

    def _warn_once(self, key: str, message: str) -> None:
        if key in self._warned:
            log.debug("%s", message)
        else:
            self._warned.add(key)
            log.warning("%s", message)


async def _read_capped(resp: httpx.Response) -> bytes:
    """At most MAX_BODY bytes of the answer; leaving early makes httpx close the connection."""
    chunks: list[bytes] = []
    size = 0
    raw = cast(AsyncGenerator[bytes, None], resp.aiter_raw())  # a generator: closed on leaving
    async with contextlib.aclosing(raw) as stream:
        async for chunk in stream:
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY:
                break
    return b"".join(chunks)[:MAX_BODY]


async def send_once(cfg: ZammadConfig, event: CtiEvent) -> ZammadAnswer:
    """Post one event with a throw-away client (``cti-bridge send``)."""
    async with ZammadClient(cfg, max_connections=1) as client:
        return await client.post(event)


CHECK_EVENT: CtiEvent = {
    "event": "newCall",
    "direction": "check",
    "callId": "cti-bridge-check",
    "from": "0",
    "to": "0",
}


async def check_endpoint(cfg: ZammadConfig) -> tuple[bool, str]:
    """Probe the endpoint without storing anything.

    Zammad checks the token before the direction, so ``direction=check`` gets 422 "Invalid
    'direction'" with a valid token and 401 with a wrong one, and no call log row is written.
    """
    where = cfg.display_url + (f" via proxy {cfg.display_proxy}" if cfg.proxy else "")
    try:
        answer = await send_once(cfg, CHECK_EVENT)
    except ZammadRejected as exc:
        if exc.status_code == 422 and "direction" in (exc.error or "").lower():
            return True, f"{where}: token accepted, CTI integration enabled"
        if exc.status_code == 401:
            return False, f"{where}: wrong token (HTTP 401: {exc.error or 'invalid token'})"
        if exc.feature_off:
            return (
                False,
                f"{where}: Generic CTI integration is disabled or not configured "
                f"in Zammad ({exc.error})",
            )
        return False, f"{where}: {exc.reason}"
    except ZammadError as exc:
        return False, f"{where}: Zammad unreachable: {exc.reason}"
    return False, f"{where}: unexpected success ({answer.action}): is this Zammad's CTI endpoint?"

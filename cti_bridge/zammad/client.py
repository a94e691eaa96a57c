"""HTTP client for Zammad's Generic CTI endpoint (``POST /api/v1/cti/<token>``).

One ``httpx.AsyncClient`` (one keep-alive pool) per :class:`ZammadClient` posts form-encoded
events and turns every outcome into either a typed :class:`ZammadAnswer` or a precise
:class:`ZammadError`, so the delivery loop can decide what is safe to repeat (see
``zammad.delivery``). Facts about Zammad's answers: docs/zammad-cti.md (status codes, error
bodies, ``caller_id``).

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
  raised, and mapped here to ``maybe_processed=True``. Zammad's call log is not idempotent.
- The token is the URL's last path segment: no message built here contains the URL or the token,
  httpx's exception texts are never used as they are (they may hold the URL or the peer's
  address), and foreign texts (a redirect's Location) are scrubbed before they go anywhere.
- Proxies: ``[zammad] proxy`` when set, else ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` from
  the environment (``trust_env``). HTTP/1.1 only (httpx's HTTP/2 stays off).
"""

from __future__ import annotations

import contextlib
import functools
import http.cookiejar
import json
import logging
import os
import re
import socket
import ssl
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Literal, cast
from urllib.parse import quote_plus

import certifi
import httpx

from cti_bridge.config import ZammadConfig, redact_url
from cti_bridge.events import CtiEvent, form_items

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
CALLER_ID_RE = re.compile(r"\+?[0-9]{1,20}")
_NUMBER_RE = re.compile(r"\+?[0-9*#]{1,40}")
_ERROR_TEXT_MAX = 200
# Statuses that mean "Zammad's side is configured differently than we think" (see module doc).
CONFIG_STATUSES = frozenset({401, 403, 404, 422})
TRANSIENT_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class ZammadAnswer:
    """What Zammad told the PBX to do; ``none`` also covers unreadable 200 answers."""

    action: Literal["none", "reject", "dial"]
    caller_id: str | None = None
    number: str | None = None
    reason: str | None = None


NO_ACTION = ZammadAnswer("none")


class ZammadError(Exception):
    """A post that Zammad did not accept.

    ``status_code`` is None when no HTTP answer came back. ``error`` is Zammad's own ``error``
    text when the body was Zammad's JSON error (None for HTML pages, proxies, network errors),
    which is how the delivery loop tells a Rails answer from something in front of it.
    ``maybe_processed`` is False only when the request certainly never reached the server.
    """

    def __init__(
        self,
        reason: str,
        *,
        status_code: int | None = None,
        error: str | None = None,
        maybe_processed: bool = True,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code
        self.error = error
        self.maybe_processed = maybe_processed

    @property
    def already_exists(self) -> bool:
        """Zammad's humanised "call_id already exists" (current and older wording)."""
        return (
            self.status_code == 500
            and self.error is not None
            and ("already exists" in self.error.lower())
        )

    @property
    def error_id(self) -> bool:
        """Zammad's opaque 500 "Error ID xyz" (for answer/hangup: no such call_id)."""
        return self.error is not None and self.error.startswith("Error ID")


class ZammadUnavailable(ZammadError):
    """Transient: connection error, timeout, 429, 5xx. Retrying later may succeed."""


class ZammadRejected(ZammadError):
    """Configuration: wrong token (401), disabled integration (422), wrong URL (3xx/403/404)."""


def _scrub(text: str, limit: int | None = _ERROR_TEXT_MAX) -> str:
    """Remove tokens and URLs from a foreign text (a Location header, an error message)."""
    for token in _TOKENS:
        text = text.replace(token, "***")
    text = re.sub(r"https?://[^\s\"']+", lambda m: redact_url(m.group(0)), text)
    return text if limit is None else text[:limit]


def _clean(text: str, limit: int = _ERROR_TEXT_MAX) -> str:
    """One printable line: server texts go into logs and status, which must stay one line."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


_TOKENS: set[str] = set()  # tokens of every client made in this process, scrubbed from texts


def _token_of(url: str) -> str:
    path = urllib.parse.urlsplit(url).path.rstrip("/")
    return path.rsplit("/", 1)[-1] if "/" in path else ""


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

_TIMEOUT_PHASES: dict[type[httpx.TimeoutException], tuple[str, bool]] = {
    httpx.PoolTimeout: ("pool", False),
    httpx.ConnectTimeout: ("connect", False),
    httpx.WriteTimeout: ("write", True),
    httpx.ReadTimeout: ("read", True),
}


def _why(exc: BaseException) -> str:
    """The root cause without the URL or peer address (both sit in httpx's exception texts)."""
    seen: BaseException | None = exc
    root = exc
    while seen is not None:
        root = seen
        seen = seen.__cause__ or seen.__context__
    if isinstance(root, ssl.SSLCertVerificationError):
        return f"TLS certificate: {root.verify_message}"
    if isinstance(root, ssl.SSLError):
        return f"TLS: {root.reason or type(root).__name__}"
    if isinstance(root, socket.gaierror):
        return f"name lookup: {root.strerror}"
    if isinstance(root, OSError) and root.errno:  # its strerror may name the peer: not used
        return os.strerror(root.errno)
    return type(root).__name__


def _unavailable(exc: httpx.TransportError, via_proxy: bool) -> ZammadUnavailable:
    """Which failure, and whether the request may have reached Zammad (see the module doc)."""
    if isinstance(exc, httpx.TimeoutException):
        phase, sent = _TIMEOUT_PHASES.get(type(exc), ("read", True))
        return ZammadUnavailable(f"timeout ({phase})", maybe_processed=sent)
    proxy = "proxy: " if via_proxy else ""
    if isinstance(exc, httpx.ProxyError):
        # httpcore's text is the proxy's status line answering CONNECT.
        m = re.match(r"\s*(\d{3})\b", str(exc))
        hint = " (check the proxy's user and password)" if m and m.group(1) == "407" else ""
        status = f": HTTP {m.group(1)}" if m else f": {_why(exc)}"
        return ZammadUnavailable(f"proxy refused the tunnel{status}{hint}", maybe_processed=False)
    if isinstance(exc, httpx.ConnectError):
        return ZammadUnavailable(f"cannot connect: {proxy}{_why(exc)}", maybe_processed=False)
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ZammadUnavailable("unsupported URL scheme", maybe_processed=False)
    if isinstance(exc, httpx.RemoteProtocolError):
        return ZammadUnavailable(f"broken answer: {_scrub(_why(exc))}")
    return ZammadUnavailable(f"connection failed: {type(exc).__name__} ({_why(exc)})")


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
        token = _token_of(self._url)
        if len(token) >= 4:  # a shorter "token" would scrub ordinary text to pieces
            _TOKENS.add(token)
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
            raise _unavailable(exc, self._cfg.proxy is not None) from None
        status = resp.status_code
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s of call %r: HTTP %d", event.get("event"), event.get("callId"), status)
        return self._interpret(status, resp.headers.get("location"), raw)

    def _interpret(self, status: int, location: str | None, raw: bytes) -> ZammadAnswer:
        doc = _json(raw)
        error = (
            _clean(doc["error"])
            if isinstance(doc, dict) and isinstance(doc.get("error"), str)
            else None
        )
        if 200 <= status < 300:
            return self._answer(doc, raw)
        if 300 <= status < 400:
            where = _scrub(redact_url(location)) if location else "nowhere"
            raise ZammadRejected(
                f"HTTP {status} redirect to {where} (not followed: check the URL)",
                status_code=status,
            )
        reason = f"HTTP {status}: {error}" if error else f"HTTP {status} (no Zammad error body)"
        if status in TRANSIENT_STATUSES or status >= 500:
            raise ZammadUnavailable(reason, status_code=status, error=error)
        raise ZammadRejected(reason, status_code=status, error=error)

    def _answer(self, doc: object, raw: bytes) -> ZammadAnswer:
        if not isinstance(doc, dict):
            kind = "not JSON" if doc is _NOT_JSON else f"a JSON {type(doc).__name__}"
            self._warn_once(
                kind, f"Zammad answered 200 with a body that is {kind}; counted as delivered"
            )
            return NO_ACTION
        action = doc.get("action")
        if action is None:
            return NO_ACTION
        if action == "reject":
            reason = doc.get("reason")
            return ZammadAnswer(
                "reject", reason=_clean(reason, 40) if isinstance(reason, str) else None
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
        self._warn_once("action", f"Zammad answered an unknown action {repr(action)[:40]}; ignored")
        return NO_ACTION

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


_NOT_JSON = object()


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, ValueError):
        return _NOT_JSON


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
        text = (exc.error or "").lower()
        if exc.status_code == 422 and "direction" in text:
            return True, f"{where}: token accepted, CTI integration enabled"
        if exc.status_code == 401:
            return False, f"{where}: wrong token (HTTP 401: {exc.error or 'invalid token'})"
        if exc.status_code == 422 and ("disabled" in text or "not configured" in text):
            return (
                False,
                f"{where}: Generic CTI integration is disabled or not configured "
                f"in Zammad ({exc.error})",
            )
        return False, f"{where}: {exc.reason}"
    except ZammadError as exc:
        return False, f"{where}: Zammad unreachable: {exc.reason}"
    return False, f"{where}: unexpected success ({answer.action}): is this Zammad's CTI endpoint?"

"""HTTP client for Zammad's Generic CTI endpoint (``POST /api/v1/cti/<token>``).

One :class:`~cti_bridge._http.HttpClient` (one keep-alive pool) posts form-encoded events and
turns every outcome into either a typed :class:`ZammadAnswer` or a precise :class:`ZammadError`,
so the delivery loop can decide what is safe to repeat (see ``zammad.delivery``). Facts about
Zammad's answers come from /work/shared/docs/zammad-cti.md (controller checks, error
humanisation, ``caller_id``).

Why the details:
- ``Accept: application/json``: without it Rails answers errors with its HTML 500 page.
- Redirects are not followed: Zammad never redirects this route, so a 3xx means a wrong URL
  (http->https, a login page); following it could post the call log somewhere else.
- Only the first ``MAX_BODY`` bytes of an answer are read: a hostile or broken server cannot make
  the daemon buffer megabytes; ``Accept-Encoding: identity`` keeps that cap honest (no gzip bomb).
- No cookies: the token in the URL is the only credential; a Rails session must not ride along.
- The token is the URL's last path segment: no message built here contains the URL or the token,
  and foreign texts (a redirect's Location) are scrubbed before they go anywhere.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote_plus

from cti_bridge._http import ConnectError, HttpClient, HttpError, HttpTimeout
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


def ssl_verify(cfg: ZammadConfig) -> ssl.SSLContext | bool:
    if not cfg.verify_tls:
        return False
    if cfg.ca_bundle:
        return ssl.create_default_context(cafile=cfg.ca_bundle)
    return True


# Field names and most values (event, direction, cause, numbers of busy lines) repeat all day:
# quoting each once is a measurable share of a POST's CPU.
_quote = functools.lru_cache(maxsize=8192)(quote_plus)


def form_body(event: CtiEvent) -> str:
    """The form-encoded body, ``user[]`` repeated once per name (as urlencode would)."""
    return "&".join(f"{_quote(k)}={_quote(v)}" for k, v in form_items(event))


class ZammadClient:
    """Posts CTI events; safe to share between tasks (one connection pool)."""

    def __init__(self, cfg: ZammadConfig, *, max_connections: int | None = None) -> None:
        self._cfg = cfg
        self._url = cfg.url.get()
        token = _token_of(self._url)
        if len(token) >= 4:  # a shorter "token" would scrub ordinary text to pieces
            _TOKENS.add(token)
        self._http: HttpClient | None = None
        self._unusable = ""
        try:
            self._http = HttpClient(
                self._url,
                headers={
                    "Accept": "application/json",
                    "Accept-Encoding": "identity",
                    "Content-Type": "application/x-www-form-urlencoded",
                    "User-Agent": "cti-bridge",
                },
                verify=ssl_verify(cfg),
                max_connections=max_connections or cfg.concurrency + 4,
                max_response_bytes=MAX_BODY,
                proxy=cfg.proxy.get() if cfg.proxy is not None else None,
            )
        except ValueError as exc:  # config validation catches these; a hand-made config may not
            self._unusable = f"unusable URL: {exc}"
        self._warned: set[str] = set()

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
        if self._http is None:
            raise ZammadRejected(self._unusable)
        body = form_body(event).encode("ascii")  # quote_plus leaves only ASCII
        try:
            resp = await self._http.post(body, timeout=self._cfg.timeout)
        except HttpTimeout as exc:
            raise ZammadUnavailable(f"timeout ({exc.phase})", maybe_processed=exc.sent) from None
        except ConnectError as exc:
            raise ZammadUnavailable(
                f"cannot connect: {exc.reason}", maybe_processed=False
            ) from None
        except HttpError as exc:
            raise ZammadUnavailable(_scrub(exc.reason), maybe_processed=exc.sent) from None
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s of call %r: HTTP %d", event.get("event"), event.get("callId"), resp.status
            )
        location = resp.header(b"location")
        return self._interpret(
            resp.status, location.decode("latin-1") if location is not None else None, resp.body
        )

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

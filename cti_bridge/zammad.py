"""HTTP client for Zammad's Generic CTI endpoint (``POST /api/v1/cti/<token>``).

One ``httpx.AsyncClient`` (one keep-alive pool) posts form-encoded events and turns every outcome
into either a typed :class:`ZammadAnswer` or a precise :class:`ZammadError`, so the delivery loop
can decide what is safe to repeat (see ``cti_bridge.delivery``). Facts about Zammad's answers come
from /work/shared/docs/zammad-cti.md (controller checks, error humanisation, ``caller_id``).

Why the details:
- ``Accept: application/json``: without it Rails answers errors with its HTML 500 page.
- Redirects are not followed: Zammad never redirects this route, so a 3xx means a wrong URL
  (http->https, a login page); following it could post the call log somewhere else.
- Only the first ``MAX_BODY`` bytes of an answer are read: a hostile or broken server cannot make
  the daemon buffer megabytes; ``Accept-Encoding: identity`` keeps that cap honest (no gzip bomb).
- The token is the URL's last path segment: no message built here contains the URL or the token,
  and texts from httpx (which do embed URLs) are scrubbed before they go anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.cookiejar
import json
import logging
import re
import ssl
import sys
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote_plus

import httpx

from ._transport import LeanTransport
from .config import ZammadConfig, redact_url
from .events import CtiEvent, form_items

log = logging.getLogger(__name__)

try:
    import sniffio  # noqa: F401
except ImportError:
    # httpcore 1.0 runs `import sniffio` several times per request; anyio >= 4.? no longer pulls
    # it in, and a failed import scans sys.path every time (~2 ms of CPU per request here).
    # Caching the miss keeps the same outcome (ImportError -> "asyncio") at no cost.
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

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
    """Remove tokens and URLs from a foreign message (httpx puts URLs in its texts)."""
    for token in _TOKENS:
        text = text.replace(token, "***")
    text = re.sub(r"https?://[^\s\"']+", lambda m: redact_url(m.group(0)), text)
    return text if limit is None else text[:limit]


def _clean(text: str, limit: int = _ERROR_TEXT_MAX) -> str:
    """One printable line: server texts go into logs and status, which must stay one line."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


_TOKENS: set[str] = set()  # tokens of every client made in this process, scrubbed from logs


class _RedactFilter(logging.Filter):
    """httpx logs request URLs at INFO, httpcore response headers (a Location) at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = _scrub(text, limit=None)
        if clean != text:
            record.msg, record.args = clean, None
        return True


_FILTER = _RedactFilter()
# A logger's filters do not apply to its children's records: name each one httpx/httpcore use.
for _name in (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
):
    logging.getLogger(_name).addFilter(_FILTER)


def _token_of(url: str) -> str:
    path = httpx.URL(url).path.rstrip("/")
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


class _NoCookies(http.cookiejar.CookieJar):
    """A jar that keeps nothing: the token in the URL is the only credential, a Rails session
    cookie must not ride along, and parsing Set-Cookie on every answer cost a fifth of a post.
    """

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def add_cookie_header(self, request: Any) -> None:
        return None


class ZammadClient:
    """Posts CTI events; safe to share between tasks (one connection pool)."""

    def __init__(self, cfg: ZammadConfig, *, max_connections: int | None = None) -> None:
        self._cfg = cfg
        self._url = cfg.url.get()
        token = _token_of(self._url)
        if len(token) >= 4:  # a shorter "token" would scrub ordinary text to pieces
            _TOKENS.add(token)
        conns = max_connections or cfg.concurrency + 4
        # httpx's API with a lean HTTP/1.1 transport underneath: httpcore/anyio/h11 cost about
        # three times the CPU per POST (bench/post.py), and posting bounds the whole daemon.
        transport = LeanTransport(
            verify=ssl_verify(cfg), max_connections=conns, max_response_bytes=MAX_BODY
        )
        self._target: httpx.URL | str = self._url
        with contextlib.suppress(httpx.InvalidURL):
            self._target = httpx.URL(self._url)  # parsed once, not on every POST
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(cfg.timeout),
            follow_redirects=False,
            trust_env=False,
            cookies=_NoCookies(),
            headers={
                "Accept": "application/json",
                "Accept-Encoding": "identity",
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": "cti-bridge",
            },
        )
        self._warned: set[str] = set()

    @property
    def display_url(self) -> str:
        return self._cfg.display_url

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ZammadClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def post(self, event: CtiEvent) -> ZammadAnswer:
        """Post one event; return Zammad's answer or raise a ZammadError subclass."""
        body = form_body(event)
        try:
            async with asyncio.timeout(self._cfg.timeout):
                status, location, raw = await self._exchange(body)
        except TimeoutError:
            raise ZammadUnavailable("timeout") from None
        except httpx.TimeoutException as exc:
            sent = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
            raise ZammadUnavailable(
                f"timeout ({type(exc).__name__})", maybe_processed=sent
            ) from None
        except httpx.ConnectError as exc:
            raise ZammadUnavailable(
                f"cannot connect: {_scrub(str(exc)) or type(exc).__name__}",
                maybe_processed=False,
            ) from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise ZammadRejected(f"unusable URL ({type(exc).__name__})") from None
        except (httpx.HTTPError, OSError) as exc:
            detail = _scrub(str(exc))
            raise ZammadUnavailable(
                f"{type(exc).__name__}{': ' + detail if detail else ''}"
            ) from None
        except Exception as exc:  # e.g. OverflowError for a port out of range; text may hold URL
            raise ZammadUnavailable(f"unexpected {type(exc).__name__}") from None
        return self._interpret(status, location, raw)

    async def _exchange(self, body: str) -> tuple[int, str | None, bytes]:
        async with self._http.stream("POST", self._target, content=body) as resp:
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_raw():
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_BODY:
                    break  # leaving the block early closes this connection: fine, it is rare
            return resp.status_code, resp.headers.get("location"), b"".join(chunks)[:MAX_BODY]

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
    where = cfg.display_url
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

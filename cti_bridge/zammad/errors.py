"""The ways a post can fail, typed, and texts about them that are safe to log.

The delivery policy decides from these fields alone what may be sent again
(docs/zammad-cti.md#5-status-codes-and-error-bodies and
#6-not-idempotent-duplicates-order-retries), so a transport
failure is mapped here with care for one question: may the request have reached Zammad?
httpcore resends a request only when its pooled connection turned out busy or closed *before*
anything was written; any failure after that may have been processed (``maybe_processed``).

No text built here holds the URL or the token: httpx's exception texts are never used as they
are (they may hold the URL or the peer's address), and foreign texts are scrubbed.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import urllib.parse

import httpx

from cti_bridge.config import redact_url

_ERROR_TEXT_MAX = 200
#: 408/425/429 say "try later"; every 5xx is transient too (whether it may be repeated is the
#: delivery policy's question, not the client's).
TRANSIENT_STATUSES = frozenset({408, 425, 429})


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

    @property
    def feature_off(self) -> bool:
        """422 "Feature is disabled"/"not configured": Zammad's CTI integration is off."""
        text = (self.error or "").lower()
        return self.status_code == 422 and ("disabled" in text or "not configured" in text)


class ZammadUnavailable(ZammadError):
    """Transient: connection error, timeout, 429, 5xx. Retrying later may succeed."""


class ZammadRejected(ZammadError):
    """Configuration: wrong token (401), disabled integration (422), wrong URL (3xx/403/404)."""


_TOKENS: set[str] = set()  # tokens of every client made in this process, scrubbed from texts


def remember_token(url: str) -> None:
    """Scrub the token of ``url`` (its last path segment) from every later foreign text."""
    path = urllib.parse.urlsplit(url).path.rstrip("/")
    token = path.rsplit("/", 1)[-1] if "/" in path else ""
    if len(token) >= 4:  # a shorter "token" would scrub ordinary text to pieces
        _TOKENS.add(token)


def scrub(text: str, limit: int | None = _ERROR_TEXT_MAX) -> str:
    """Remove tokens and URLs from a foreign text (a Location header, an error message)."""
    for token in _TOKENS:
        text = text.replace(token, "***")
    text = re.sub(r"https?://[^\s\"']+", lambda m: redact_url(m.group(0)), text)
    return text if limit is None else text[:limit]


def one_line(text: str, limit: int = _ERROR_TEXT_MAX) -> str:
    """One printable line: server texts go into logs and status, which must stay one line."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


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


def unavailable(exc: httpx.TransportError, via_proxy: bool) -> ZammadUnavailable:
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
        return ZammadUnavailable(f"broken answer: {scrub(_why(exc))}")
    return ZammadUnavailable(f"connection failed: {type(exc).__name__} ({_why(exc)})")

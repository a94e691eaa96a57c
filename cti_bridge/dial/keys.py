"""The key in an agent's dial link: an HMAC of the extension and its serial.

``key = base64url(HMAC-SHA256([dial] secret, "cti-bridge dial v1" NUL ext NUL serial))``. The
serial lives in the outbox database (``Outbox.dial_serial``); ``cti-bridge dial-link EXT
--revoke`` bumps it, so every older link of that agent stops working at once, while the daemon
runs (it reads the serial on every request). Changing the secret revokes every link.

Links carry the key in the query string, never in the path: the access log writes paths only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cti_bridge.config import Secret

_DOMAIN = b"cti-bridge dial v1"


class LinkKeys:
    """Make and check link keys with one secret."""

    def __init__(self, secret: Secret) -> None:
        self._secret = secret.get().encode("utf-8")

    def key(self, ext: str, serial: int) -> str:
        msg = b"\0".join((_DOMAIN, ext.encode("utf-8"), str(serial).encode()))
        digest = hmac.new(self._secret, msg, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def valid(self, ext: str, serial: int, key: str) -> bool:
        """Constant-time comparison; a key of the wrong shape is simply not valid."""
        return hmac.compare_digest(self.key(ext, serial).encode(), key.encode("utf-8", "replace"))

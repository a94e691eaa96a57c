"""Read the ``tel:`` URL a browser hands to the dial link (RFC 3966, as web pages write it).

Accepted: ``tel:`` (any case) and a number of 3 to 20 digits, optionally led by ``+`` (also
written ``%2B``), with spaces, dots, dashes, slashes and parentheses between the digits:
``tel:+49 30 1234567``, ``tel:030/1234567``, ``tel:%2B49.30.123-4567``. Anything else (letters,
RFC 3966 parameters such as ``;ext=`` or ``;phone-context=``, ``*``/``#`` service codes, a second
``+``) is refused with a message that says what was wrong, because a click-to-dial that guesses
calls somebody.
"""

from __future__ import annotations

import re
import urllib.parse

MIN_DIGITS = 3
MAX_DIGITS = 20
MAX_LENGTH = 64

_SEPARATORS = re.compile(r"[ .\-/()\u00a0]+")
_NUMBER = re.compile(r"\+?[0-9]+")


class TelError(ValueError):
    """A ``tel:`` URL that is not a plain phone number; the message is for the agent."""


def parse_tel(url: str) -> str:
    """``"tel:+49 30 1234567"`` -> ``"+49301234567"``; raise :class:`TelError` otherwise.

    The browser percent-encodes the whole ``tel:`` URL into the handler URL and the web
    framework decodes that once; what the page itself had encoded (``%2B``) is decoded here.
    """
    text = urllib.parse.unquote(url.strip()) if "%" in url else url.strip()
    if len(text) > MAX_LENGTH:
        raise TelError(f"not a phone link: longer than {MAX_LENGTH} characters")
    scheme, colon, rest = text.partition(":")
    if not colon or scheme.lower() != "tel":
        raise TelError("not a phone link: expected tel:<number>")
    number = _SEPARATORS.sub("", rest.strip())
    if not number:
        raise TelError("the phone link has no number")
    if not _NUMBER.fullmatch(number):
        bad = next(
            (c for c in number if not (c.isascii() and c.isdigit()) and c != "+"),
            "+",  # the only other way to fail: a "+" not in front
        )
        raise TelError(f"not a phone number: {bad!r} is not allowed in tel:{rest.strip()}")
    digits = len(number) - number.startswith("+")
    if not MIN_DIGITS <= digits <= MAX_DIGITS:
        expected = f"expected {MIN_DIGITS} to {MAX_DIGITS}"
        raise TelError(f"not a phone number: {digits} digits ({expected})")
    return number

"""Phone numbers as Zammad matches them.

Zammad's blocked-caller check is an exact string match and its caller lookup works on digits,
so numbers go out as digits only, without a leading ``+``. A withheld caller becomes
``anonymous``. With ``[numbers] region`` set, phonenumbers turns national numbers (and numbers
dialled with the region's international prefix) into international ones.
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

from .config import NumbersConfig

ANONYMOUS = "anonymous"
_WITHHELD = frozenset({"", "<unknown>", "unknown", "anonymous", "restricted", "private", "<null>"})
_DIGITS = frozenset("0123456789")


class NumberPlan:
    """Normalises external numbers; internal extensions are only stripped of non-digits."""

    def __init__(self, cfg: NumbersConfig | None = None) -> None:
        cfg = cfg or NumbersConfig()
        self.region = cfg.region
        # Bounded cache: the same few thousand numbers recur all day on a busy PBX.
        self.external = lru_cache(maxsize=4096)(self._external)

    @staticmethod
    def digits(value: str) -> str:
        return "".join(c for c in value if c in _DIGITS)

    def caller(self, value: str | None) -> str:
        """A caller number, or ``anonymous`` when withheld or not a number."""
        if value is None or value.strip().lower() in _WITHHELD:
            return ANONYMOUS
        number = self.external(value)
        return number or ANONYMOUS

    def _external(self, value: str) -> str:
        v = value.strip()
        d = self.digits(v)
        if not d or v.startswith("+") or self.region is None:
            return d
        try:
            number = phonenumbers.parse(d, self.region)
        except phonenumbers.NumberParseException:
            return d
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]

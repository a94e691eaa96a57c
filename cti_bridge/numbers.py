"""Phone numbers as Zammad matches them.

Zammad's blocked-caller check is an exact string match and its caller lookup works on digits,
so numbers go out as digits only, without a leading ``+``. A withheld caller becomes
``anonymous``. The optional ``[numbers]`` rules turn national numbers into international ones.
"""

from __future__ import annotations

from functools import lru_cache

from .config import NumbersConfig

ANONYMOUS = "anonymous"
_WITHHELD = frozenset({"", "<unknown>", "unknown", "anonymous", "restricted", "private", "<null>"})
_DIGITS = frozenset("0123456789")


class NumberPlan:
    """Normalises external numbers; internal extensions are only stripped of non-digits."""

    def __init__(self, cfg: NumbersConfig | None = None) -> None:
        cfg = cfg or NumbersConfig()
        self.country_code = cfg.country_code
        self.national_prefix = cfg.national_prefix
        self.international_prefix = cfg.international_prefix
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
        plus = v.startswith("+")
        d = self.digits(v)
        if not d or plus or not self.country_code:
            return d
        if self.international_prefix and d.startswith(self.international_prefix):
            return d[len(self.international_prefix) :]
        if self.national_prefix and d.startswith(self.national_prefix) and len(d) > 6:
            return self.country_code + d[len(self.national_prefix) :]
        return d

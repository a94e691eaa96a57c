"""Phone numbers as Zammad matches them.

Zammad's blocked-caller check and caller-ID routing compare exact strings and its caller lookup
works on digits, so every external number goes out as international digits without ``+``
(``390612345678``), and a withheld caller as ``anonymous``. Extensions are only stripped of
non-digits.

Reading a number needs the numbering plan of the PBX's country, ``[numbers] region`` (ISO 3166
alpha-2). Without it the bridge does not guess: numbers are only stripped of ``+`` and of
everything that is not a digit. With it, phonenumbers' metadata of that region decides; no
country is special-cased here. A number without ``+`` is read as:

1. **international** when it starts with the region's international (IDD) prefix (``00`` in
   most of Europe, ``011`` in NANP): ``0039 06 1234 5678`` → ``390612345678``;
2. **national** when it starts with the region's national prefix (``0`` in DE/GB/FR/CH/AT,
   ``1`` in NANP): ``030 1234567`` → ``49301234567``, ``12125551234`` → ``12125551234``;
3. **national** when it has neither prefix, the region writes its national numbers without a
   national prefix (the region has none, as Italy, whose leading ``0`` belongs to the number;
   or its number formats mark the prefix optional, as NANP) *and* it is a valid national number
   there: ``0612345678`` in IT → ``390612345678``, ``2125551234`` in US → ``12125551234``;
4. otherwise **as it is**: bare digits are already international. This is how most trunks
   deliver caller IDs (``4930123456``), and in a region that dials a national prefix (DE) a
   number without one cannot be national, so it must not get the country code twice.

Why this order: the prefixes are unambiguous where present, so they decide first. Without a
prefix the only honest question is whether the region lets national numbers appear bare at
all; where it does (IT, NANP), a valid national number is far likelier than a foreign number
that happens to look like one, and where it does not, bare digits can only be international.

A result phonenumbers does not consider a possible number (``110``, ``201``, a short code, a
truncated number) is not rewritten: the stripped digits go out unchanged.
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from phonenumbers import CountryCodeSource, NumberParseException, PhoneMetadata

from .config import NumbersConfig

ANONYMOUS = "anonymous"
_WITHHELD = frozenset({"", "<unknown>", "unknown", "anonymous", "restricted", "private", "<null>"})
_DIGITS = frozenset("0123456789")


def national_prefix_optional(region: str) -> bool:
    """Whether ``region`` writes national numbers without a national prefix (IT, NANP).

    True when the region has no national prefix, or none of its national number formats
    requires one (phonenumbers marks NANP's ``1`` optional and never formats with it).
    """
    meta = PhoneMetadata.metadata_for_region(region)
    if meta is None or not meta.national_prefix:
        return True
    return not any(
        f.national_prefix_formatting_rule and not f.national_prefix_optional_when_formatting
        for f in meta.number_format
    )


class NumberPlan:
    """Normalises external numbers by the rules of the module docstring."""

    def __init__(self, cfg: NumbersConfig | None = None) -> None:
        self.region = (cfg or NumbersConfig()).region
        self._bare_national = self.region is not None and national_prefix_optional(self.region)
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

    def caller_id(self, value: str) -> str:
        """Zammad's outbound caller ID as Asterisk should set it: E.164 with ``+``.

        Zammad's caller IDs are international numbers (typed with or without ``+``); with a
        region, the form a trunk cannot misread is ``+`` and the international digits. Without a
        region, or for anything that is not a possible international number, the value goes
        to Asterisk as Zammad sent it.
        """
        if self.region is None:
            return value
        number = self.external(value)
        try:
            parsed = phonenumbers.parse("+" + number)
        except NumberParseException:
            return value
        return "+" + number if phonenumbers.is_possible_number(parsed) else value

    def _external(self, value: str) -> str:
        v = value.strip()
        d = self.digits(v)
        if not d or self.region is None or v.startswith("+"):
            return d
        try:
            number = phonenumbers.parse(d, self.region, keep_raw_input=True)
        except NumberParseException:
            return d  # "0", a bare IDD prefix: nothing to read
        bare = (
            number.country_code_source == CountryCodeSource.FROM_DEFAULT_COUNTRY
            and phonenumbers.national_significant_number(number) == d
        )
        if bare:
            readable = self._bare_national and phonenumbers.is_valid_number(number)
        else:
            readable = phonenumbers.is_possible_number(number)
        if not readable:
            return d
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]

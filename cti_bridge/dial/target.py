"""From the number in a ``tel:`` link to what the PBX dials, and whether it may.

The number is read with the ``[numbers]`` rules (:class:`~cti_bridge.numbers.NumberPlan`), so
``030 1234567`` and ``+49 30 1234567`` are the same customer, and ``[dial] deny`` is matched
on those international digits whatever way the link wrote them. ``[dial] format`` then
decides what goes after ``[dial] prefix`` into the Originate's ``Exten``: the international
digits, or the number as dialled from the PBX's country (``national``: ``030 1234567`` for a
German number from DE, ``00 1 212 555 1234`` for an American one).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException

from cti_bridge.config import DialConfig, DialFormat
from cti_bridge.numbers import NumberPlan


class DeniedNumber(ValueError):
    """The number matches ``[dial] deny``; the message is for the agent."""


@dataclass(frozen=True)
class DialTarget:
    international: str  # digits, no "+": what Zammad and [dial] deny see
    display: str  # "+49 30 1234567", for the agent's phone display and the page
    exten: str  # [dial] prefix + the number in [dial] format


class TargetPlan:
    """Reads, checks and formats dial targets by ``[dial]`` and ``[numbers]``."""

    def __init__(self, cfg: DialConfig, numbers: NumberPlan) -> None:
        self.cfg = cfg
        self.numbers = numbers

    def target(self, number: str) -> DialTarget:
        """``number`` as parse_tel returns it ("+49301234567", "0301234567")."""
        intl = self.numbers.external(number)
        pattern = next((p for p in self.cfg.deny if fnmatch.fnmatchcase(intl, p)), None)
        parsed = self._parse(intl)
        display = (
            phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
            if parsed is not None
            else ("+" + intl if number.startswith("+") else number)
        )
        if pattern is not None:
            raise DeniedNumber(f"{display} is not dialled: it matches [dial] deny {pattern!r}")
        return DialTarget(intl, display, self.cfg.prefix + self._formatted(intl, parsed))

    def _formatted(self, intl: str, parsed: phonenumbers.PhoneNumber | None) -> str:
        if self.cfg.format is DialFormat.INTERNATIONAL or parsed is None or not self.numbers.region:
            return intl
        dialled = phonenumbers.format_out_of_country_calling_number(parsed, self.numbers.region)
        return NumberPlan.digits(dialled)

    @staticmethod
    def _parse(intl: str) -> phonenumbers.PhoneNumber | None:
        try:
            parsed = phonenumbers.parse("+" + intl)
        except NumberParseException:
            return None
        return parsed if phonenumbers.is_possible_number(parsed) else None

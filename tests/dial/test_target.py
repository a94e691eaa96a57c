"""Numbers by [numbers] and [dial]: deny on international digits, Exten in the set format."""

from __future__ import annotations

import pytest

from cti_bridge.config import DialConfig, DialFormat, NumbersConfig, Secret
from cti_bridge.dial.target import DeniedNumber, TargetPlan
from cti_bridge.numbers import NumberPlan

DE = NumberPlan(NumbersConfig(region="DE"))


def plan(**over: object) -> TargetPlan:
    return TargetPlan(DialConfig(secret=Secret("x" * 16), **over), DE)  # type: ignore[arg-type]


@pytest.mark.parametrize("written", ["+49301234567", "0301234567", "0049301234567"])
def test_one_customer_however_written(written: str) -> None:
    t = plan(prefix="0").target(written)
    assert (t.international, t.display, t.exten) == (
        "49301234567",
        "+49 30 1234567",
        "049301234567",
    )


def test_national_format_dials_as_from_the_region() -> None:
    p = plan(prefix="0", format=DialFormat.NATIONAL)
    assert p.target("+49301234567").exten == "00301234567"
    assert p.target("+12125551234").exten == "0" + "0012125551234"


@pytest.mark.parametrize("written", ["+499001234567", "09001234567"])
def test_deny_matches_the_international_digits_whatever_the_form(written: str) -> None:
    with pytest.raises(DeniedNumber, match=r"\+49 900 .*matches \[dial\] deny '49900\*'"):
        plan(deny=("49900*",)).target(written)


def test_deny_leaves_other_numbers_alone() -> None:
    assert plan(deny=("49900*",)).target("+491719990007").international == "491719990007"

"""The tel: parser: what web pages write is read, anything else is refused with a reason."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti_bridge.dial.tel import MAX_DIGITS, MIN_DIGITS, TelError, parse_tel


@pytest.mark.parametrize(
    ("url", "number"),
    [
        ("tel:+49 30 1234567", "+49301234567"),
        ("tel:030/1234567", "0301234567"),
        ("tel:%2B49301234567", "+49301234567"),
        ("TEL:+49.30.123-4567", "+49301234567"),
        ("tel:+49 (0)30 1234567", "+490301234567"),
        ("tel:+1-212-555-1234", "+12125551234"),
    ],
)
def test_written_numbers_are_read(url: str, number: str) -> None:
    assert parse_tel(url) == number


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "expected tel:"),
        ("http://example.com/", "expected tel:"),
        ("sip:101@pbx", "expected tel:"),
        ("tel:", "has no number"),
        ("tel:+49 30 CALL-ME", "'C' is not allowed"),
        ("tel:123;ext=7", "';' is not allowed"),
        ("tel:4930;phone-context=example.com", "';' is not allowed"),
        ("tel:*31#0301234567", "'*' is not allowed"),
        ("tel:+49+30", "'+' is not allowed"),
        ("tel:12", "2 digits"),
        ("tel:" + "1" * 21, "21 digits"),
        ("tel:\u0663\u0663\u0663", "is not allowed"),  # Arabic-Indic digits are not ASCII
        ("tel:" + "1 " * 40, "longer than"),
    ],
)
def test_anything_else_is_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(TelError, match=reason.replace("(", r"\(").replace("+", r"\+")):
        parse_tel(url)


_SEP = st.sampled_from([" ", ".", "-", "/", ""])


@given(
    plus=st.booleans(),
    groups=st.lists(st.text("0123456789", min_size=1, max_size=5), min_size=1, max_size=6),
    seps=st.lists(_SEP, min_size=6, max_size=6),
    encode=st.booleans(),
)
def test_separators_and_encoding_never_change_the_digits(
    plus: bool, groups: list[str], seps: list[str], encode: bool
) -> None:
    digits = "".join(groups)
    written = "".join(g + s for g, s in zip(groups, seps, strict=False)).strip(" ./-")
    lead = "%2B" if plus and encode else "+" if plus else ""
    url = "tel:" + lead + written
    if MIN_DIGITS <= len(digits) <= MAX_DIGITS and len(url) <= 64:
        assert parse_tel(url) == ("+" if plus else "") + digits
    else:
        with pytest.raises(TelError):
            parse_tel(url)


@given(st.text(max_size=40))
def test_no_input_gets_through_that_is_not_a_number(text: str) -> None:
    try:
        number = parse_tel("tel:" + text)
    except TelError as exc:
        assert str(exc)  # always a reason
        return
    assert number.lstrip("+").isascii() and number.lstrip("+").isdigit()
    assert MIN_DIGITS <= len(number.lstrip("+")) <= MAX_DIGITS


def test_the_browser_encoded_form_is_decoded_once_by_the_framework_then_here() -> None:
    # The page wrote tel:%2B49..., the browser escapes that into the handler URL.
    in_query = urllib.parse.quote("tel:%2B4930123456", safe="")
    assert parse_tel(urllib.parse.unquote(in_query)) == "+4930123456"

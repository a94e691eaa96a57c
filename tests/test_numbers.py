"""Phone numbers as Zammad gets them: NumberPlan's rules, the replay CLI and the AGI hook."""

from __future__ import annotations

import json
from pathlib import Path

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti_bridge.config import NumbersConfig, parse_config
from cti_bridge.demo.zammad import FakeZammad
from cti_bridge.numbers import ANONYMOUS, NumberPlan, national_prefix_optional
from tests.agi.test_server import agi_call, asterisk_reply, make_env
from tests.calls.test_tracker import inbound_answered, outbound, trunk_in
from tests.service.test_daemon import make_config, running, until
from tests.support.cli import cli
from tests.support.fake_ami import FakeAmi

# The table of issue 11 (README "Phone numbers"): (number from the PBX, region, sent).
TABLE = [
    ("0612345678", "IT", "390612345678"),
    ("2125551234", "US", "12125551234"),
    ("030 1234567", "DE", "49301234567"),
    ("+49 30 1234567", "DE", "49301234567"),
    ("+49 30 1234567", "US", "49301234567"),
    ("0039 06 1234 5678", "DE", "390612345678"),
    ("4930123456", "DE", "4930123456"),
]

# What an operator's PBX hands over besides: trunk formats, the other rule of each branch.
EXTRA = [
    ("0301234567", "DE", "49301234567"),  # national with the prefix
    ("01711234567", "DE", "491711234567"),  # German mobile
    ("491711234567", "DE", "491711234567"),  # as a German trunk delivers it
    ("0049301234567", "DE", "49301234567"),  # IDD prefix of the own country
    ("00 1 212 555 1234", "DE", "12125551234"),
    ("12125551234", "US", "12125551234"),  # as a US trunk delivers it
    ("+1 212 555 1234", "DE", "12125551234"),
    ("011 49 30 1234567", "US", "49301234567"),  # NANP IDD is 011
    ("6135550123", "CA", "16135550123"),  # NANP outside the US
    ("3471234567", "IT", "393471234567"),  # Italian mobile, no leading 0
    ("390612345678", "IT", "390612345678"),  # Italian trunk: already international
    ("4930123456", "IT", "4930123456"),  # a German number on an Italian trunk
    ("020 7946 0000", "GB", "442079460000"),
    ("442079460000", "GB", "442079460000"),
    ("01 23 45 67 89", "FR", "33123456789"),
    ("044 668 18 00", "CH", "41446681800"),
    ("0316 123456", "AT", "43316123456"),
    ("01 5880 0", "AT", "43158800"),
    ("110", "DE", "110"),  # emergency
    ("112", "IT", "112"),
    ("911", "US", "911"),
    ("201", "DE", "201"),  # extensions
    ("201", "US", "201"),
    ("4711", "DE", "4711"),
    ("0", "DE", "0"),  # nothing to read: digits unchanged
    ("0039", "DE", "0039"),
]

REGIONS = ("DE", "US", "IT", "GB", "FR", "CH", "AT", "CA", "NL", "ES", "RU", "JP", "BR")


def plan(region: str | None) -> NumberPlan:
    return NumberPlan(NumbersConfig(region=region))


@pytest.mark.parametrize(("number", "region", "sent"), TABLE + EXTRA)
def test_external_numbers(number: str, region: str, sent: str) -> None:
    assert plan(region).external(number) == sent
    assert plan(region).caller(number) == sent


@pytest.mark.parametrize(
    ("number", "sent"),
    [
        ("+49 30 1234567", "49301234567"),
        ("0039 06 1234 5678", "00390612345678"),
        ("030 1234567", "0301234567"),
        ("2125551234", "2125551234"),
        ("201", "201"),
    ],
)
def test_without_region_numbers_are_only_stripped(number: str, sent: str) -> None:
    assert NumberPlan().external(number) == sent
    assert NumberPlan(None).external(number) == sent


@pytest.mark.parametrize("value", ["anonymous", "<unknown>", "Restricted", "private", " ", None])
@pytest.mark.parametrize("region", [None, "DE"])
def test_withheld_caller_is_anonymous(value: str | None, region: str | None) -> None:
    assert plan(region).caller(value) == ANONYMOUS


@pytest.mark.parametrize(
    ("region", "optional"),
    [("IT", True), ("US", True), ("CA", True), ("ES", True)]
    + [(r, False) for r in ("DE", "GB", "FR", "CH", "AT", "NL")],
)
def test_which_regions_write_national_numbers_without_prefix(region: str, optional: bool) -> None:
    assert national_prefix_optional(region) is optional


def test_cache_is_bounded() -> None:
    numbers = plan("DE")
    for n in ("0301234567", "0301234567", "4930123456"):
        numbers.external(n)
    info = numbers.external.cache_info()
    assert (info.maxsize, info.hits, info.misses) == (4096, 1, 2)


@given(st.text(alphabet="0123456789+ -()/#*abc", max_size=24))
def test_without_region_output_is_exactly_the_digits(value: str) -> None:
    assert NumberPlan().external(value) == "".join(c for c in value if c.isdigit())


@given(st.sampled_from(REGIONS), st.text(alphabet="0123456789+ -()", max_size=24))
def test_output_is_digits_or_anonymous(region: str, value: str) -> None:
    numbers = plan(region)
    out = numbers.external(value)
    assert out == "" or out.isdigit()
    assert numbers.caller(value) == (out or ANONYMOUS)
    # International digits are a fixed point: normalising twice changes nothing.
    if value.strip().startswith("+"):
        assert numbers.external(out) in (out, numbers.external("+" + out))


@given(st.sampled_from(REGIONS), st.text(alphabet="0123456789", min_size=1, max_size=3))
def test_short_codes_are_unchanged(region: str, code: str) -> None:
    assert plan(region).external(code) == code


@given(st.sampled_from(REGIONS), st.text(alphabet="0123456789", min_size=1, max_size=12))
def test_unchanged_only_when_not_a_possible_rewrite(region: str, value: str) -> None:
    """Whatever is rewritten is a possible international number."""
    out = plan(region).external(value)
    if out != value:
        assert phonenumbers.is_possible_number(phonenumbers.parse("+" + out))


@pytest.mark.parametrize(
    ("region", "zammad", "asterisk"),
    [
        ("DE", "4930777000000", "+4930777000000"),
        ("DE", "+4930777000000", "+4930777000000"),
        ("DE", "030777000000", "+4930777000000"),  # typed nationally in Zammad
        ("IT", "0612345678", "+390612345678"),
        ("DE", "110", "110"),  # not a possible number: as Zammad sent it
        (None, "4930777000000", "4930777000000"),
        (None, "+4930777000000", "+4930777000000"),
    ],
)
def test_outbound_caller_id_for_asterisk(region: str | None, zammad: str, asterisk: str) -> None:
    assert plan(region).caller_id(zammad) == asterisk


# ------------------------------------------------------------------ through `cti-bridge replay`


def write_config(tmp: Path, region: str) -> Path:
    path = tmp / "cti-bridge.toml"
    path.write_text(
        '[ami]\nusername = "cti"\nsecret = "s"\n'
        '[zammad]\nurl = "https://zammad.example/api/v1/cti/T"\n'
        '[pbx]\ntrunk_endpoints = ["carrier"]\n'
        '[users]\n"101" = "Alice Agent"\n'
        f'[numbers]\nregion = "{region}"\n'
    )
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(("number", "region", "sent"), TABLE)
def test_table_holds_through_replay(tmp_path: Path, number: str, region: str, sent: str) -> None:
    """An inbound call from and to the number, and an outbound call dialling it."""
    events = [
        trunk_in("1.0", caller=number, did=number),
        *inbound_answered()[1:],
        *outbound(number="9" + number),  # the dialplan strips the trunk access digit
    ]
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps(e) + "\n" for e in events))
    res = cli("replay", str(trace), "--config", str(write_config(tmp_path, region)))
    assert res.returncode == 0, res.stderr
    posted = [json.loads(line) for line in res.stdout.splitlines()]
    inbound = [e for e in posted if e["callId"] == "1.0"]
    out = [e for e in posted if e["callId"] == "2.0"]
    assert [e["event"] for e in inbound] == ["newCall", "answer", "hangup"]
    assert [e["event"] for e in out] == ["newCall", "answer", "hangup"]
    assert {(e["from"], e["to"]) for e in inbound} == {(sent, sent)}
    assert {(e["from"], e["to"]) for e in out} == {("101", sent)}


# ------------------------------------------------------------------ through the AGI hook


async def test_agi_national_numbers_go_out_international(tmp_path: Path) -> None:
    """The hook's TO and caller id are read by the region; Zammad's routing and block match."""
    routing = (("49*", "4930777000000"),)
    async with FakeAmi() as ami:
        with FakeZammad(blocked=("49301234567",), routing=routing) as zammad:
            data = make_config(tmp_path, ami, zammad.url(), numbers={"region": "DE"})
            async with running(parse_config(data)) as daemon:
                await ami.wait_login()
                assert daemon.agi is not None
                out_env = make_env(
                    args=["0301234567"],
                    agi_channel="PJSIP/alice-00000001",
                    agi_callerid="101",
                    agi_calleridname="Alice Agent",
                    agi_context="from-internal",
                    agi_extension="00301234567",
                )
                commands = await agi_call(
                    daemon.agi, out_env, reply=lambda c: asterisk_reply(c, "1.out")
                )
                assert "SET VARIABLE CALLERID(num) +4930777000000" in commands
                in_env = make_env(agi_callerid="030 1234567", agi_extension="0305551000")
                commands = await agi_call(
                    daemon.agi, in_env, reply=lambda c: asterisk_reply(c, "1.in")
                )
                assert "EXEC Hangup 17" in commands
                await until(lambda: zammad.stored("1.out") == zammad.stored("1.in") == ["newCall"])
                calls = zammad.calls()
                (sent_out,) = calls["1.out"].events
                (sent_in,) = calls["1.in"].events
                assert (sent_out["direction"], sent_out["to"]) == ("out", "49301234567")
                assert (sent_in["direction"], sent_in["from"]) == ("in", "49301234567")
                assert sent_in["to"] == "49305551000"

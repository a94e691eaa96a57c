"""The FastAGI dialogue as pure functions: environment, replies, argument quoting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti_bridge.agi.wire import (
    AgiProtocolError,
    agi_command,
    build_request,
    env_args,
    parse_env,
    parse_reply,
    quote_arg,
)


def test_args_stop_at_gap() -> None:
    env = {"agi_network_script": "newcall", "agi_arg_1": "a", "agi_arg_3": "c"}
    assert build_request(env, None).args == ["a"]


def test_env_args_in_order() -> None:
    assert env_args({"agi_arg_2": "b", "agi_arg_1": "a"}) == ["a", "b"]
    assert env_args({"agi_arg_2": "b"}) == []


def test_request_script_from_agi_request() -> None:
    env = {"agi_request": "agi://127.0.0.1:4573/decide", "agi_uniqueid": "1.5"}
    request = build_request(env, None)
    assert (request.network_script, request.linkedid) == ("decide", "1.5")
    assert build_request(env, "1.2").linkedid == "1.2"


def test_request_to_prefers_dnid_in_macro_extension() -> None:
    env = {"agi_network_script": "newcall", "agi_extension": "s", "agi_dnid": "4930555"}
    assert build_request(env, None).to == "4930555"
    env["agi_dnid"] = "unknown"
    assert build_request(env, None).to == "s"


def test_agi_command_quotes_only_arguments() -> None:
    assert agi_command("SET VARIABLE", "CTI_ACTION", "a b") == 'SET VARIABLE CTI_ACTION "a b"'
    assert agi_command("EXEC", "Hangup", "17") == "EXEC Hangup 17"
    with pytest.raises(ValueError):
        agi_command("SET VARIABLE", "X", "a\nEXEC Hangup")


def _parse_args(line: str) -> list[str]:
    """res_agi.c parse_args: whitespace splits, double quotes group, backslash escapes."""
    out: list[str] = []
    cur: list[str] = []
    quoted = escaped = started = False
    for c in line:
        if escaped:
            cur.append(c)
            escaped = False
        elif c == "\\":
            escaped = started = True
        elif c == '"':
            quoted = not quoted
            started = True
        elif c in " \t" and not quoted:
            if started:
                out.append("".join(cur))
            cur, started = [], False
        else:
            cur.append(c)
            started = True
    if started:
        out.append("".join(cur))
    return out


@given(st.text(max_size=40))
def test_quote_arg_round_trips_or_refuses(value: str) -> None:
    if any(c in value for c in "\r\n\0"):
        with pytest.raises(ValueError):
            quote_arg(value)
        return
    quoted = quote_arg(value)
    assert _parse_args(f"SET VARIABLE X {quoted}") == ["SET", "VARIABLE", "X", value]


@given(st.lists(st.text(max_size=30), max_size=10))
def test_parse_env_accepts_or_refuses_cleanly(lines: list[str]) -> None:
    try:
        env = parse_env(lines)
    except AgiProtocolError:
        return
    assert all(k.startswith("agi_") for k in env)
    build_request(env, None)  # whatever survives parsing builds a request


@given(st.text(max_size=40))
def test_parse_reply_accepts_or_refuses_cleanly(line: str) -> None:
    try:
        reply = parse_reply(line)
    except AgiProtocolError:
        return
    assert 100 <= reply.code <= 599


def test_parse_reply_shapes() -> None:
    r = parse_reply("200 result=1 (a (b) c)")
    assert (r.code, r.result, r.data) == (200, 1, "a (b) c")
    r = parse_reply("200 result=-1")
    assert (r.code, r.result, r.data, r.ok) == (200, -1, None, True)
    assert parse_reply("511 Command Not Permitted on a dead channel").code == 511
    assert not parse_reply("510 Invalid or unknown command").ok
    for bad in ("HANGUP", "000 x", "٢٠٠ result=1", "2000", "", "20"):
        with pytest.raises(AgiProtocolError):
            parse_reply(bad)

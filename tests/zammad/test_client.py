"""The Zammad client against the real fake server (and raw sockets for hostile answers)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cti_bridge.config import Secret, ZammadConfig
from cti_bridge.demo.zammad import FakeZammad, call_events
from cti_bridge.zammad import (
    MAX_BODY,
    NO_ACTION,
    ZammadAnswer,
    ZammadClient,
    ZammadRejected,
    ZammadUnavailable,
    check_endpoint,
    send_once,
)
from tests.support.raw_http import answer_each, answer_then, ok, serve

TOKEN = "Tok-4f9a8b7c6d"
PATH = f"/api/v1/cti/{TOKEN}"


def zcfg(url: str, **kw: Any) -> ZammadConfig:
    return ZammadConfig(url=Secret(url), timeout=kw.pop("timeout", 0.5), **kw)


@pytest.fixture
def fake() -> Iterator[FakeZammad]:
    with FakeZammad(TOKEN, blocked=("4930666",), default_caller_id="4930777000") as f:
        yield f


@pytest.fixture
async def client(fake: FakeZammad) -> AsyncIterator[ZammadClient]:
    async with ZammadClient(zcfg(fake.url())) as c:
        yield c


async def test_form_encoding_and_headers(fake: FakeZammad, client: ZammadClient) -> None:
    ev = call_events("f1")[0] | {"user[]": ["Anna Ö", "Bob & Co"]}
    assert await client.post(ev) == NO_ACTION
    req = fake.requests[0]
    assert req.getall("user[]") == ["Anna Ö", "Bob & Co"]
    assert req.get("callId") == "f1" and req.get("direction") == "in"
    assert fake.calls()["f1"].to_comment == "Anna Ö, Bob & Co"


async def test_accept_json_header_is_sent() -> None:
    # Without it Rails answers errors with HTML (docs/zammad-cti.md §1).
    async with serve(answer_each(ok(b"{}"))) as srv, ZammadClient(zcfg(srv.url(PATH))) as c:
        await c.post(call_events("h")[0])
    head = srv.heads[0].lower()
    assert b"accept: application/json" in head
    assert b"content-type: application/x-www-form-urlencoded" in head


async def test_reject_and_dial(fake: FakeZammad, client: ZammadClient) -> None:
    blocked = call_events("r", frm="4930666")[0]
    assert await client.post(blocked) == ZammadAnswer("reject", reason="busy")
    out = call_events("o", direction="out", frm="100", to="4912345")[0]
    assert await client.post(out) == ZammadAnswer("dial", caller_id="4930777000", number="4912345")


@pytest.mark.parametrize(
    "body",
    [
        b'{"action":"dial","callerId":"+4930123","number":"0171"}',  # API doc spelling
        b'{"action":"dial","caller_id":"+4930123","number":"0171"}',
    ],
)
async def test_dial_accepts_both_spellings(body: bytes) -> None:
    async with serve(answer_each(ok(body))) as srv:
        answer = await send_once(zcfg(srv.url(PATH)), call_events("d", direction="out")[0])
    assert answer == ZammadAnswer("dial", caller_id="+4930123", number="0171")


@pytest.mark.parametrize(
    "caller_id",
    [
        "123\\nAction: Originate",
        '123\\"; EXEC System(reboot)',
        "123;456",
        "SET VARIABLE X 1",
        "1" * 21,
        "",
        "+",
        12345,
        None,
    ],
)
async def test_hostile_caller_id_is_dropped(
    caller_id: object, caplog: pytest.LogCaptureFixture
) -> None:
    import json

    value = json.dumps(caller_id) if not isinstance(caller_id, str) else f'"{caller_id}"'
    body = b'{"action":"dial","caller_id":' + value.encode() + b',"number":"1"}'
    async with serve(answer_each(ok(body))) as srv:
        answer = await send_once(zcfg(srv.url(PATH)), call_events("x", direction="out")[0])
    assert answer == NO_ACTION
    assert "unusable caller_id" in caplog.text
    assert "\n" not in caplog.records[-1].getMessage()


@pytest.mark.parametrize(
    "body",
    [b"<html>oops</html>", b'["a"]', b'{"action":"transfer"}', b"\xff\xfe", b"", b"null"],
)
async def test_unreadable_200_is_delivered(body: bytes) -> None:
    async with serve(answer_each(ok(body))) as srv:
        assert await send_once(zcfg(srv.url(PATH)), call_events("g")[0]) == NO_ACTION


async def test_unreadable_200_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    async with serve(answer_each(ok(b"<html>"))) as srv:
        c = ZammadClient(zcfg(srv.url(PATH)))
        for _ in range(3):
            await c.post(call_events("g")[0])
        await c.aclose()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1


async def test_huge_body_is_capped(fake: FakeZammad, client: ZammadClient) -> None:
    fake.huge(size=20 * MAX_BODY)
    assert await client.post(call_events("big")[0]) == NO_ACTION
    assert fake.stored("big") == ["newCall"]
    # The connection was dropped, not drained; the pool still works afterwards.
    assert await client.post(call_events("big")[2]) == NO_ACTION


async def test_body_read_stops_at_cap() -> None:
    """A server streaming an endless body: the client must stop reading, not buffer it all."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (16384, b" " * 16384)
    async with serve(answer_then(head, pieces=chunk, count=2000)) as srv:
        # Reading it whole would take 32 MB: only a capped read returns this early.
        answer = await send_once(zcfg(srv.url(PATH), timeout=2), call_events("s")[0])
    assert answer == NO_ACTION
    assert srv.sent >= MAX_BODY


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (401, ZammadRejected),
        (404, ZammadRejected),
        (500, ZammadUnavailable),
        (502, ZammadUnavailable),
        (503, ZammadUnavailable),
        (429, ZammadUnavailable),
    ],
)
async def test_status_classes(status: int, exc: type[Exception]) -> None:
    resp = b"HTTP/1.1 %d X\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\n<h1/>" % status
    async with serve(answer_each(resp)) as srv:
        with pytest.raises(exc) as info:
            await send_once(zcfg(srv.url(PATH)), call_events("e")[0])
    assert info.value.status_code == status  # type: ignore[attr-defined]
    assert info.value.error is None  # type: ignore[attr-defined]


async def test_zammad_errors_are_parsed(fake: FakeZammad, client: ZammadClient) -> None:
    ev = call_events("z")
    await client.post(ev[0])
    with pytest.raises(ZammadUnavailable) as dup:
        await client.post(ev[0])
    assert dup.value.already_exists and dup.value.status_code == 500
    with pytest.raises(ZammadUnavailable) as unknown:
        await client.post(call_events("nope")[1])
    assert unknown.value.error_id and not unknown.value.already_exists
    with pytest.raises(ZammadRejected) as bad:
        await client.post(ev[1] | {"direction": "sideways"})
    assert bad.value.status_code == 422 and "direction" in (bad.value.error or "")


async def test_older_already_exists_wording() -> None:
    body = b'{"error":"Object already exists!"}'
    resp = b"HTTP/1.1 500 E\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    async with serve(answer_each(resp)) as srv:
        with pytest.raises(ZammadUnavailable) as info:
            await send_once(zcfg(srv.url(PATH)), call_events("o")[0])
    assert info.value.already_exists


async def test_redirect_not_followed(fake: FakeZammad, client: ZammadClient) -> None:
    with FakeZammad(TOKEN) as other:
        fake.redirect(other.url() + "?token=" + TOKEN)
        with pytest.raises(ZammadRejected) as info:
            await client.post(call_events("r")[0])
        assert other.requests == []
    assert info.value.status_code == 302
    assert "redirect" in str(info.value) and TOKEN not in str(info.value)


async def test_connection_refused_and_timeout(fake: FakeZammad) -> None:
    cfg = zcfg(fake.url(), timeout=0.2)
    fake.delay(0.5)
    async with ZammadClient(cfg) as c:
        with pytest.raises(ZammadUnavailable) as slow:
            await c.post(call_events("t")[0])
        assert "timeout" in slow.value.reason
        fake.down()
        with pytest.raises(ZammadUnavailable) as refused:
            await c.post(call_events("t")[0])
    assert refused.value.maybe_processed is False
    assert refused.value.status_code is None
    for exc in (slow.value, refused.value):
        assert TOKEN not in str(exc) and "127.0.0.1" not in str(exc)


async def test_token_not_in_logs(fake: FakeZammad, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with ZammadClient(zcfg(fake.url())) as c:
        await c.post(call_events("l")[0])
        fake.redirect(f"http://127.0.0.1:9/x?t={TOKEN}")
        with pytest.raises(ZammadRejected):
            await c.post(call_events("l")[1])
    assert "HTTP 302" in caplog.text  # each POST was logged at DEBUG...
    assert TOKEN not in caplog.text  # ...without the token


async def test_check_endpoint(fake: FakeZammad) -> None:
    ok, msg = await check_endpoint(zcfg(fake.url()))
    assert ok and "***" in msg and TOKEN not in msg
    assert fake.calls() == {}  # the probe stored nothing
    ok, msg = await check_endpoint(zcfg(fake.url("wrong-token")))
    assert not ok and "wrong token" in msg and "wrong-token" not in msg
    fake.enabled = False
    ok, msg = await check_endpoint(zcfg(fake.url()))
    assert not ok and "disabled" in msg
    fake.enabled, fake.configured = True, False
    ok, msg = await check_endpoint(zcfg(fake.url()))
    assert not ok and "not configured" in msg
    fake.down()
    ok, msg = await check_endpoint(zcfg(fake.url()))
    assert not ok and "unreachable" in msg


async def test_check_endpoint_older_wording() -> None:
    body = b'{"error":"Invalid direction!"}'
    resp = b"HTTP/1.1 422 U\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    async with serve(answer_each(resp)) as srv:
        ok, _msg = await check_endpoint(zcfg(srv.url(PATH)))
    assert ok


# -- the fake's model of Zammad (the e2e tests and benches rely on it) --------------------------


async def test_fake_models_zammads_call_log(fake: FakeZammad, client: ZammadClient) -> None:
    inbound = call_events("in1", answered=False)
    await client.post(inbound[0])
    await client.post(inbound[1])  # hangup while ringing: a missed call
    assert fake.calls()["in1"].done is False
    await client.post(inbound[1])  # a duplicate hangup flips it to done (docs §5)
    assert fake.calls()["in1"].done is True
    late = call_events("in1")[1]
    assert await client.post(late) == NO_ACTION  # answer after hangup: ignored
    assert fake.stored("in1") == ["newCall", "hangup", "hangup"]
    # A blocked caller is rejected and still logged; outbound routing rewrites `from`.
    assert (await client.post(call_events("b", frm="4930666")[0])).action == "reject"
    assert fake.stored("b") == ["newCall"]
    fake.routing = [("41*", "41715880339000")]
    dial = await client.post(call_events("o", direction="out", frm="100", to="4147110")[0])
    assert dial.caller_id == "41715880339000" and fake.calls()["o"].from_ == "41715880339000"
    statuses = [r.status for r in fake.requests]
    assert statuses == [200] * len(statuses)


def test_fake_runs_standalone() -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cti_bridge.demo.zammad", "--token", "T0k3n-xyz"],
        cwd=root,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        port = json.loads(proc.stdout.readline())["port"]
        import urllib.parse
        import urllib.request

        form = {"event": "newCall", "direction": "in", "callId": "s", "from": "1", "to": "2"}
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/v1/cti/T0k3n-xyz",
            data=urllib.parse.urlencode(form).encode(),
            timeout=10,
        ) as r:
            assert r.status == 200 and json.loads(r.read()) == {}
        line = json.loads(proc.stdout.readline())
        assert line["status"] == 200 and "T0k3n-xyz" not in line["path"]
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/api/v1/cti/Tok-4f9a8b7c6d", "ftp://x/y"])
def test_unusable_url_is_a_clean_error(url: str) -> None:
    # The config refuses such a URL before any client sees it, without repeating the token.
    with pytest.raises(ValidationError, match="expected an http") as info:
        zcfg(url)
    assert "Tok-4f9a8b7c6d" not in str(info.value)


@given(
    st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=30), max_size=6),
    st.lists(st.text(max_size=20), max_size=3),
)
def test_form_body_is_exactly_urlencode(fields: dict[str, str], users: list[str]) -> None:
    from urllib.parse import urlencode

    from cti_bridge.events import form_items
    from cti_bridge.zammad import form_body

    event: dict[str, str | list[str]] = {**fields, "user[]": users}
    assert form_body(event) == urlencode(form_items(event))

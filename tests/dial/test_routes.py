"""Click-to-dial through a real daemon: HTTP over loopback, Originate at the fake AMI."""

from __future__ import annotations

import logging
import re

import pytest

from tests.dial.conftest import DialBridge
from tests.service.test_daemon import until


def _key(url: str) -> str:
    m = re.search(r"key=([^&]+)", url)
    assert m
    return m.group(1)


async def test_a_dial_link_rings_the_agents_device_and_reports_the_outcome(
    dial_bridge: DialBridge,
) -> None:
    b = dial_bridge
    b.ami.originate_delay = 0.3
    r = await b.http.get(b.handler("tel:+49 30 1234567"), headers={"accept": "application/json"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["message"] == "Your phone 101 rings; pick it up to call +49 30 1234567."
    (orig,) = b.ami.originates
    assert orig["channel"] == "PJSIP/alice"
    assert orig["context"] == "from-internal"
    assert orig["exten"] == "049301234567"
    assert orig["timeout"] == "30000"
    assert orig["async"] == "true"
    assert orig["callerid"] == '"\u2192 +49 30 1234567" <101>'
    state = await b.http.get(f"/dial/101/outcome/{body['attempt']}")
    assert state.json()["state"] == "ringing"
    await until(lambda: b.daemon.dial is not None and not b.daemon.ami.originates)
    final = (await b.http.get(f"/dial/101/outcome/{body['attempt']}")).json()
    assert final == {
        "state": "answered",
        "final": True,
        "message": "You picked up: calling +49 30 1234567.",
    }
    assert _key(b.handler("tel:1")) not in body["attempt"]
    assert (await b.http.get(f"/dial/102/outcome/{body['attempt']}")).status_code == 404


@pytest.mark.parametrize(
    ("response", "reason", "state"),
    [
        ("Failure", "5", "busy"),
        ("Failure", "3", "no-answer"),
        ("Failure", "0", "no-answer"),
        ("Failure", "8", "failed"),
    ],
)
async def test_busy_and_unanswered_phones_are_reported(
    dial_bridge: DialBridge, response: str, reason: str, state: str
) -> None:
    b = dial_bridge
    b.ami.originate_outcome = (response, reason)
    r = await b.http.get(b.handler("tel:030/1234567"), headers={"accept": "application/json"})
    attempt = r.json()["attempt"]
    await until(lambda: not b.daemon.ami.originates)
    assert (await b.http.get(f"/dial/101/outcome/{attempt}")).json()["state"] == state


async def test_the_html_answer_shows_the_message_at_once(dial_bridge: DialBridge) -> None:
    b = dial_bridge
    r = await b.http.get(b.handler("tel:%2B49301234567"))
    assert r.status_code == 200
    assert "Your phone 101 rings; pick it up to call +49 30 1234567." in r.text
    assert _key(b.handler("tel:1")) not in r.text  # this page holds no key
    csp = r.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce and f"<script nonce={nonce.group(1)}>" in r.text
    assert "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"


async def test_a_wrong_key_gets_403_dials_nothing_and_is_not_logged(
    dial_bridge: DialBridge, caplog: pytest.LogCaptureFixture
) -> None:
    b = dial_bridge
    caplog.set_level(logging.DEBUG)
    good = b.handler("tel:+49301234567")
    key = _key(good)
    tampered = good.replace(key, key[:-2] + ("AA" if not key.endswith("AA") else "BB"))
    for url in (tampered, good.replace(f"key={key}", "key="), good.replace(f"key={key}&", "")):
        r = await b.http.get(url)
        assert r.status_code == 403
        assert "not valid" in r.text
    r = await b.http.get(b.setup_url().replace(key, _key(tampered)))
    assert r.status_code == 403
    assert b.ami.originates == []
    assert any("/dial/101/call 403" in rec.getMessage() for rec in caplog.records)
    for rec in caplog.records:
        text = rec.getMessage() + str(rec.args)
        assert key not in text and _key(tampered) not in text


async def test_revoke_in_the_outbox_invalidates_the_old_link_at_once(
    dial_bridge: DialBridge,
) -> None:
    b = dial_bridge
    old = b.setup_url()
    assert (await b.http.get(old)).status_code == 200
    b.daemon.outbox.bump_dial_serial("101")  # what `dial-link --revoke` does, from anywhere
    assert (await b.http.get(old)).status_code == 403
    assert (await b.http.get(b.setup_url())).status_code == 200


async def test_bad_and_denied_numbers_are_refused_with_a_clear_message(
    dial_bridge: DialBridge,
) -> None:
    b = dial_bridge
    r = await b.http.get(b.handler("tel:+49 30 CALL-ME"), headers={"accept": "application/json"})
    assert r.status_code == 400 and "'C' is not allowed" in r.json()["message"]
    r = await b.http.get(b.handler("tel:09001234567"), headers={"accept": "application/json"})
    assert r.status_code == 403
    assert r.json()["message"] == "+49 900 1 234567 is not dialled: it matches [dial] deny '49900*'"
    assert b.ami.originates == []


async def test_rate_limits_answer_429_with_retry_after(dial_bridge: DialBridge) -> None:
    b = dial_bridge
    assert (await b.http.get(b.handler("tel:+49301234567"))).status_code == 200
    r = await b.http.get(b.handler("tel:+49301234568"))
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 3
    assert "Too many calls" in r.text
    assert len(b.ami.originates) == 1


async def test_a_refused_originate_names_the_missing_class(dial_bridge: DialBridge) -> None:
    b = dial_bridge
    b.ami.denied.add("originate")
    r = await b.http.get(b.handler("tel:+49301234567"), headers={"accept": "application/json"})
    assert r.status_code == 502
    assert "Permission denied (the AMI user needs write = originate)" in r.json()["message"]


async def test_the_setup_page_carries_only_its_own_key(dial_bridge: DialBridge) -> None:
    b = dial_bridge
    url = b.setup_url()
    r = await b.http.get(url)
    assert r.status_code == 200
    assert f'"key": "{_key(url)}"' in r.text
    assert 'registerProtocolHandler("tel"' in r.text
    assert "src=" not in r.text and "href=" not in r.text  # no external assets
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"

"""``cti-bridge check``'s AMI results against the fake AMI server."""

from __future__ import annotations

import pytest

from cti_bridge.ami.checks import voicemail_events
from tests.support.ami_client import SECRET, chan, running
from tests.support.fake_ami import FakeAmi, Recorder

pytestmark = pytest.mark.timeout(30)


async def test_check_reports_what_it_can(server: FakeAmi) -> None:
    server.channels = [chan(1)]
    async with running(server) as client:
        checks = await client.check(3)
        names = [n for n, _, _ in checks]
        assert names == [
            "AMI login",
            "AMI CoreShowChannels (resync)",
            "AMI system events",
            "AMI call events",
            "AMI voicemail events",
        ]
        assert all(ok for _, ok, _ in checks)
        assert "1 active channel" in checks[1][2]
        assert "not verified" in checks[4][2] and "manager show user" in checks[4][2]


@pytest.mark.parametrize(
    ("apps", "ok", "detail"),
    [
        (["VoiceMail"], True, "VoiceMail() seen"),
        (["VoiceMail", "Dial"], False, "Newexten of Dial received"),
        (["Set"], False, "Newexten of Set received"),
    ],
)
async def test_check_tells_voicemail_events_from_unfiltered_dialplan(
    server: FakeAmi, apps: list[str], ok: bool, detail: str
) -> None:
    rec = Recorder()
    async with running(server, rec) as client:
        assert await client.wait_logged_in(5)
        for i, app in enumerate(apps):
            await server.send_event(
                {"Event": "Newexten", "Privilege": "dialplan,all", "Application": app, "N": str(i)}
            )
        await rec.wait(lambda: len(rec.named("Newexten")) == len(apps))
        name, got_ok, got = voicemail_events(client)
        assert name == "AMI voicemail events"
        assert got_ok is ok and detail in got


async def test_check_reports_login_failure(server: FakeAmi) -> None:
    server.accept_logins = False
    async with running(server) as client:
        checks = await client.check(0.5)
        assert len(checks) == 1
        name, ok, detail = checks[0]
        assert name == "AMI login" and not ok and "AMI login failed" in detail
        assert SECRET not in detail

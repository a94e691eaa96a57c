"""``cti-bridge check``'s AMI results against the fake AMI server."""

from __future__ import annotations

import pytest

from tests.support.ami_client import SECRET, chan, running
from tests.support.fake_ami import FakeAmi

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
        ]
        assert all(ok for _, ok, _ in checks)
        assert "1 active channel" in checks[1][2]


async def test_check_reports_login_failure(server: FakeAmi) -> None:
    server.accept_logins = False
    async with running(server) as client:
        checks = await client.check(0.5)
        assert len(checks) == 1
        name, ok, detail = checks[0]
        assert name == "AMI login" and not ok and "AMI login failed" in detail
        assert SECRET not in detail

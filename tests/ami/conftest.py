"""The fake AMI server every AMI test talks to over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.ami_client import SECRET
from tests.support.fake_ami import FakeAmi


@pytest.fixture
async def server() -> AsyncIterator[FakeAmi]:
    srv = FakeAmi(secret=SECRET)
    await srv.start()
    yield srv
    await srv.stop()

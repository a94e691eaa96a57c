"""``cti-bridge send`` against a fake Zammad over loopback."""

from __future__ import annotations

from pathlib import Path

from cti_bridge.demo.zammad import FakeZammad
from tests.support.cli import cli, write_config


def test_send_posts_one_event_and_prints_the_answer(tmp_path: Path) -> None:
    with FakeZammad(blocked=("491711234567",)) as zammad:
        cfg = write_config(tmp_path, zammad.url())
        res = cli(
            "send",
            "newCall",
            "from=491711234567",
            "to=4930555100",
            "direction=in",
            "callId=cli-1",
            "user[]=Alice Agent",
            "user[]=Bob",
            "--config",
            str(cfg),
        )
        assert res.returncode == 0, res.stderr
        assert '"action": "reject"' in res.stdout
        (req,) = zammad.requests
        assert req.getall("user[]") == ["Alice Agent", "Bob"]
        assert zammad.token not in res.stdout + res.stderr


def test_send_with_wrong_token_says_so_without_the_token(tmp_path: Path) -> None:
    with FakeZammad() as zammad:
        cfg = write_config(tmp_path, zammad.url("wrongtoken123"))
        res = cli("send", "hangup", "callId=x", "direction=in", "--config", str(cfg))
        assert res.returncode == 1
        assert "401" in res.stderr
        assert "wrongtoken123" not in res.stderr + res.stdout

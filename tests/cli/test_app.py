"""The operator commands against real parts: send, spool, check, --version."""

from __future__ import annotations

from pathlib import Path

from cti_bridge import __version__
from cti_bridge.outbox.store import Outbox
from tests.support.cli import cli
from tests.support.fake_ami import FakeAmi
from tests.support.fake_zammad import FakeZammad


def config(tmp: Path, url: str, ami_port: int = 1, secret: str = "s3cret") -> Path:
    path = tmp / "c.toml"
    path.write_text(
        f'[ami]\nport = {ami_port}\nusername = "zammad"\nsecret = "{secret}"\n'
        f'[zammad]\nurl = "{url}"\ntimeout = 2.0\n'
        f'[spool]\npath = "{tmp / "spool.sqlite3"}"\n'
    )
    path.chmod(0o600)
    return path


def test_version() -> None:
    res = cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"cti-bridge {__version__}"


def test_send_posts_one_event_and_prints_the_answer(tmp_path: Path) -> None:
    with FakeZammad(blocked=("491711234567",)) as zammad:
        cfg = config(tmp_path, zammad.url())
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
        cfg = config(tmp_path, zammad.url("wrongtoken123"))
        res = cli("send", "hangup", "callId=x", "direction=in", "--config", str(cfg))
        assert res.returncode == 1
        assert "401" in res.stderr
        assert "wrongtoken123" not in res.stderr + res.stdout


def test_spool_list_retry_purge(tmp_path: Path) -> None:
    cfg = config(tmp_path, "http://127.0.0.1:9/api/v1/cti/t")
    box = Outbox(tmp_path / "spool.sqlite3")
    ids = box.put_many(
        [
            {"event": "newCall", "callId": "a", "direction": "in", "from": "1", "to": "2"},
            {"event": "hangup", "callId": "a", "direction": "in", "cause": "cancel"},
        ]
    )
    box.dead_letter(ids[1], "test")
    box.close()
    res = cli("spool", "list", "--config", str(cfg))
    assert res.returncode == 0 and "1 pending event(s)" in res.stdout and "newCall" in res.stdout
    res = cli("spool", "list", "--dead", "--config", str(cfg))
    assert "1 dead letter(s)" in res.stdout and "hangup" in res.stdout
    res = cli("spool", "retry", "--config", str(cfg))
    assert res.returncode == 0 and res.stdout.startswith("1 ")
    res = cli("spool", "purge", "--config", str(cfg), stdin="n\n")
    assert res.returncode == 1
    box = Outbox(tmp_path / "spool.sqlite3")
    assert box.count() == 2
    box.close()
    res = cli("spool", "purge", "--yes", "--config", str(cfg))
    assert res.returncode == 0 and "2 event(s) deleted" in res.stdout


def test_check_fails_on_wrong_token_and_unreachable_ami(tmp_path: Path) -> None:
    with FakeZammad() as zammad:
        cfg = config(tmp_path, zammad.url("badtoken999"))
        res = cli("check", "--config", str(cfg))
        assert res.returncode == 1
        lines = res.stdout.strip().splitlines()
        assert lines[0].startswith("ok   config")
        assert any(line.startswith("FAIL AMI login") for line in lines)
        assert any(line.startswith("FAIL Zammad") for line in lines)
        assert "badtoken999" not in res.stdout + res.stderr
        assert zammad.stored_count() == 0  # the check never creates a call


async def test_check_passes_against_working_peers(tmp_path: Path) -> None:
    import asyncio

    async with FakeAmi() as ami:
        with FakeZammad() as zammad:
            cfg = config(tmp_path, zammad.url(), ami.port, ami.secret)
            res = await asyncio.to_thread(cli, "check", "--config", str(cfg))
            assert res.returncode == 0, res.stdout + res.stderr
            assert all(line.startswith("ok") for line in res.stdout.strip().splitlines())
            assert zammad.stored_count() == 0

"""Run the real ``cti-bridge`` command in a subprocess, the way an operator does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cli(
    *args: str, stdin: str | None = None, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``env``: variables added to this process's, without its CTI_BRIDGE_* ones."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CTI_BRIDGE_")},
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "cti_bridge", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        input=stdin,
        env=env,
    )


def write_config(tmp: Path, url: str, ami_port: int = 1, secret: str = "s3cret") -> Path:
    path = tmp / "c.toml"
    path.write_text(
        f'[ami]\nport = {ami_port}\nusername = "zammad"\nsecret = "{secret}"\n'
        f'[zammad]\nurl = "{url}"\ntimeout = 2.0\n'
        f'[outbox]\npath = "{tmp / "outbox.sqlite3"}"\n'
    )
    path.chmod(0o600)
    return path

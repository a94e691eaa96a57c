"""``cti-bridge demo`` as a user runs it: the real command, the system's Asterisk, the round of
calls; and Ctrl-C in the middle of it leaves no process behind."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cti_bridge.demo.scenario import demo_round

from .conftest import _unavailable
from .lab import asterisk_version, daemon_command, system_asterisk

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def asterisk() -> str:
    binary = system_asterisk()
    if binary is None or asterisk_version(binary) is None:
        _unavailable("no asterisk on PATH or in /usr/sbin: run .ci/install-asterisk as root")
    assert binary is not None
    return binary


def leftovers(marker: str) -> list[str]:
    """Command lines of running processes that mention ``marker`` (the demo's temp dir)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmd:
            found.append(f"{pid}: {cmd}")
    return found


def test_demo_once_places_every_call_as_expected(asterisk: str) -> None:
    res = subprocess.run(
        [*daemon_command(), "demo", "--once", "--asterisk", asterisk],
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = res.stdout + res.stderr
    demo_dir = next(ln.split()[-1] for ln in out.splitlines() if ln.startswith("demo files in"))
    assert leftovers(demo_dir) == [] and not Path(demo_dir).exists()
    for title in ("Direction", "From", "To", "Users", "Queue", "State", "Cause", "Delivery"):
        assert title in out, out
    failed = sorted(
        ln.split(":")[1].strip() for ln in out.splitlines() if ln.startswith("NOT AS EXPECTED")
    )
    assert res.returncode == 0, f"not as expected: {failed}\n{out}"
    assert f"all {len(demo_round())} calls as expected" in out


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_line(lines: queue.Queue[str], prefix: str, seen: list[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if prefix in line:
            return line
    raise AssertionError(f"no {prefix!r} within {timeout} s:\n{''.join(seen)}")


def test_ctrl_c_stops_everything(asterisk: str) -> None:
    proc = subprocess.Popen(
        [*daemon_command(), "demo", "--asterisk", asterisk],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen: list[str] = []
    try:
        lines = _lines(proc)
        demo_dir = _wait_line(lines, "demo files in", seen, 30).split()[-1]
        _wait_line(lines, "caller log live at", seen, 120)
        assert len(leftovers(demo_dir)) >= 3, seen  # two Asterisks and the bridge
        os.kill(proc.pid, signal.SIGINT)  # Ctrl-C, mid-round
        assert proc.wait(60) == 130, "".join(seen)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert leftovers(demo_dir) == []
    assert not Path(demo_dir).exists()

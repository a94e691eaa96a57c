"""Wake-ups of an idle daemon: ``cti-bridge run`` logged in to a fake AMI server, no calls.

The daemon runs as a subprocess against the fake AMI server of tests/support and the minimal
Zammad responder of bench/e2e.py, both on loopback. After it has logged in and settled, the
bench sums the context switches (voluntary + involuntary) of all the daemon's threads from
``/proc/<pid>/task/*/status`` over ``--seconds`` and prints them per second. Each wake-up of an
idle process is one voluntary switch when it goes back to sleep, so this counts wake-ups.

Usage: .venv/bin/python bench/idle.py [--seconds 60] [--daemon-path DIR]
(--daemon-path: a source tree whose cti_bridge is run instead, to compare two versions.)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e import DaemonProc, Zammad  # noqa: E402

from tests.support.fake_ami import FakeAmi  # noqa: E402

SETTLE_S = 3.0  # after the login: the resync and the first checkpoint are not idle time


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of ``pid`` so far."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:  # the thread ended meanwhile
            continue
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split(":")[1])
    return total


async def measure(seconds: float) -> tuple[float, int]:
    ami = await FakeAmi().start()
    zammad = Zammad()
    await zammad.start()
    with tempfile.TemporaryDirectory() as tmp:
        daemon = DaemonProc(Path(tmp), ami.port, zammad.port, None)
        try:
            try:
                await ami.wait_login(timeout=30.0)
            except TimeoutError:
                raise SystemExit(f"the daemon did not log in:\n{daemon.log_tail()}") from None
            await asyncio.sleep(SETTLE_S)
            before = context_switches(daemon.proc.pid)
            await asyncio.sleep(seconds)
            switches = context_switches(daemon.proc.pid) - before
        finally:
            await daemon.stop()
            await zammad.stop()
            await ami.stop()
    return switches / seconds, switches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle time measured")
    parser.add_argument("--daemon-path", default="", help="run cti_bridge from this tree")
    args = parser.parse_args()
    DaemonProc.extra_path = args.daemon_path
    rate, switches = asyncio.run(measure(args.seconds))
    print(f"idle daemon: {rate:.2f} wake-ups/s ({switches} context switches in {args.seconds:g} s)")


if __name__ == "__main__":
    main()

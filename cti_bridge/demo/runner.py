"""``cti-bridge demo``: a private PBX, a Zammad stand-in and the real bridge, then a round of calls.

Three parts, each the real thing or the closest honest stand-in:

- the lab (:mod:`cti_bridge.demo.lab`): two private Asterisk instances on loopback ports, the
  "pbx" the bridge watches and the "world" (carrier and handsets) that places the calls;
- :class:`~cti_bridge.demo.zammad.FakeZammad`: Zammad's Generic CTI rules (duplicate newCall
  and unknown callId refused with 500, a blocked caller rejected, an outbound caller ID picked);
- the bridge: ``cti-bridge run`` as a subprocess with the ``[web]`` listener on, exactly what
  systemd starts, and click-to-dial configured (``[dial]``, a fresh secret per run): the round's
  click-to-dial call is a GET on the handler URL ``cti-bridge dial-link 101 --handler`` prints.
  A subprocess rather than in-process: the demo's threads (lab AMI clients, fake Zammad) stay
  out of the daemon's event loop, and the caller log shown here is read over the status
  socket (``status --json``) as an operator would read it.

Every child runs in its own session and dies with the demo (PR_SET_PDEATHSIG), and the demo
stops them all in ``finally``: Ctrl-C (or SIGTERM) leaves no process behind.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cti_bridge.demo.lab import Daemon, Lab, daemon_command, daemon_config, lab_dir
from cti_bridge.demo.scenario import (
    BLOCKED_CALLER,
    ZAMMAD_ROUTING,
    ClickToDial,
    DemoCall,
    demo_round,
    mismatches,
)
from cti_bridge.demo.zammad import FakeZammad
from cti_bridge.web.calls import COLUMNS, cell

ROW_TIMEOUT = 20.0  # s a finished call may take to show as hung up and delivered
DIAL_RING_TIMEOUT = 30.0  # s the agent's phone may take to be answered (or not)

# The lab's phones for [dial] (README "Click-to-dial"): alice's handset, calls then run in the
# phones' context, and the outbound route wants the trunk prefix 0 (as tests/e2e/test_dial.py).
DIAL_CONFIG = """
[dial]
secret = "{secret}"
devices = {{ "101" = "PJSIP/alice" }}
context = "from-internal"
prefix = "0"
"""


def dial_config(web: str, secret: str) -> str:
    """The TOML daemon_config appends after its ``[web]`` table: ``public_url`` (still in
    ``[web]``) for the listener at ``web``, then ``[dial]``."""
    return f'public_url = "http://{web}/"\n' + DIAL_CONFIG.format(secret=secret)


@dataclass
class Outcome:
    call: DemoCall
    problems: list[str] = field(default_factory=list)
    done: bool = False


class Demo:
    """The three parts, started and stopped together; :meth:`play` runs the round."""

    def __init__(self, root: Path, binary: str, console: Console) -> None:
        self.root = root
        self.console = console
        self.zammad = FakeZammad(blocked=(BLOCKED_CALLER,), routing=ZAMMAD_ROUTING)
        self.lab = Lab(root / "lab", binary)
        self.daemon: Daemon | None = None
        self.outcomes: dict[tuple[str, str, str], Outcome] = {}
        self.web_url = ""

    def start(self) -> None:
        self.console.print(f"demo files in {self.root}")
        self.zammad.start()
        self.console.print("starting the demo PBX (two private Asterisk instances)...")
        self.lab.start()
        bridge_dir = self.root / "bridge"
        bridge_dir.mkdir()
        web = f"127.0.0.1:{self.lab.ports.port()}"  # known in advance: [web] public_url names it
        cfg = daemon_config(
            bridge_dir,
            ami_port=self.lab.pbx_ami_port,
            ami_username=self.lab.ami_username,
            ami_secret=self.lab.ami_secret,
            zammad_url=self.zammad.url(),
            agi_port=self.lab.agi_port,
            web_listen=web,
            extra=dial_config(web, secrets.token_urlsafe(24)),
        )
        self.daemon = Daemon(cfg, bridge_dir / "cti-bridge.log").start()
        doc = self.daemon.wait_ready(timeout=30)
        self.web_url = str(doc.get("web", {}).get("url", ""))
        self.console.print(f"the bridge is up; caller log live at {self.web_url}/calls")

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
        self.lab.stop()
        self.zammad.stop()

    # -- the round ---------------------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        doc = self.daemon.status_doc() if self.daemon is not None else None
        calls = doc.get("recent_calls") if doc else None
        return [r for r in calls if isinstance(r, dict)] if isinstance(calls, list) else []

    def play(self) -> list[Outcome]:
        """Place every call of the round, one after the other; their outcomes."""
        for call in demo_round():
            self.outcomes[call.key()] = outcome = Outcome(call)
            self.lab.reset_modes()
            for target, mode in call.modes.items():
                self.lab.set_mode(target, mode, talk=call.talk.get(target))
            if isinstance(call.place, ClickToDial):
                outcome.problems = self._click_to_dial(call.place)
            else:
                handle = call.place(self.lab)
                with contextlib.suppress(TimeoutError):  # busy, rejected: a Failure response
                    self.lab.originate_response(handle, timeout=call.ring_timeout + 15)
            self.lab.wait_idle(timeout=20)
            outcome.problems += self._wait_row(call)
            outcome.done = True
        return list(self.outcomes.values())

    def _click_to_dial(self, click: ClickToDial) -> list[str]:
        """What Zammad's click does: the agent's browser opens the handler URL; then wait until
        the agent's phone is answered or not (the attempt's outcome page). Problems, if any."""
        assert self.daemon is not None
        config = str(self.daemon.config)
        link = subprocess.run(
            [*daemon_command(), "dial-link", click.extension, "--handler", "--config", config],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if link.returncode != 0:
            return [f"dial-link failed: {link.stderr.strip()}"]
        url = link.stdout.strip().replace("%s", urllib.parse.quote(click.tel, safe=""))
        r = httpx.get(url, headers={"accept": "application/json"}, timeout=10)
        if r.status_code != 200:
            return [f"handler URL answered {r.status_code}: {r.text[:200]}"]
        outcome = url.split("/call?")[0] + "/outcome/" + str(r.json()["attempt"])
        deadline = time.monotonic() + DIAL_RING_TIMEOUT
        while time.monotonic() < deadline:
            state = httpx.get(outcome, timeout=5).json()["state"]
            if state != "ringing":
                return [] if state == "answered" else [f"the agent's phone: {state}"]
            time.sleep(0.2)
        return ["the agent's phone still ringing"]

    def _wait_row(self, call: DemoCall) -> list[str]:
        deadline = time.monotonic() + ROW_TIMEOUT
        while True:
            row = _find(self.rows(), call)
            settled = row is not None and row["state"] == "hangup" and row["delivery"] != "waiting"
            if settled or time.monotonic() > deadline:
                return mismatches(call, row)
            time.sleep(0.2)

    # -- the caller log in the terminal ------------------------------------------------------

    def table(self) -> Table:
        table = Table(title="Caller log (newest first)", expand=False)
        for _, title in COLUMNS:
            table.add_column(title)
        table.add_column("As expected")
        for row in self.rows():
            outcome = self.outcomes.get((row["direction"], row["from"], row["to"]))
            table.add_row(*(cell(row, key) for key, _ in COLUMNS), _verdict(outcome))
        return table

    def view(self) -> Group:
        footer = Text(f"web page: {self.web_url}/calls   (Ctrl-C stops everything)", style="dim")
        return Group(self.table(), footer)


def _find(rows: list[dict[str, Any]], call: DemoCall) -> Mapping[str, Any] | None:
    return next((r for r in rows if (r["direction"], r["from"], r["to"]) == call.key()), None)


def _verdict(outcome: Outcome | None) -> Text:
    if outcome is None:
        return Text("")
    if not outcome.done:
        return Text("...", style="dim")
    return Text("yes", style="green") if not outcome.problems else Text("NO", style="bold red")


def report(outcomes: list[Outcome], console: Console) -> int:
    """One line per call not as expected; the exit code of ``--once``."""
    bad = [o for o in outcomes if o.problems]
    console.print()
    for o in bad:
        console.print(f"NOT AS EXPECTED: {o.call.name}: " + "; ".join(o.problems), markup=False)
    if bad:
        console.print(f"{len(bad)} of {len(outcomes)} call(s) not as expected")
        return 1
    console.print(f"all {len(outcomes)} calls as expected")
    return 0


@contextlib.contextmanager
def running_demo(binary: str, console: Console) -> Iterator[Demo]:
    """The demo's parts running in a temp dir; all stopped and removed on the way out."""
    with lab_dir(prefix="cti-demo-") as root:
        demo = Demo(root, binary, console)
        try:
            demo.start()
            yield demo
        finally:
            console.print("stopping the bridge, the PBX and the Zammad stand-in...")
            demo.stop()


def run_demo(binary: str, *, once: bool, console: Console) -> int:
    """The round with the caller log live; ``once``: exit after it with its verdict."""
    with running_demo(binary, console) as demo:
        with Live(get_renderable=demo.view, console=console, refresh_per_second=2):
            outcomes = demo.play()
            if not once:
                while True:  # until Ctrl-C: the page and this table stay live
                    time.sleep(1)
        return report(outcomes, console)

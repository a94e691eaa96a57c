"""``cti-bridge demo``: see the bridge work on a private PBX, no Zammad and no PBX of your own."""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Annotated

import typer

from cti_bridge.cli.app import EXIT_CONFIG, app

INSTALL_HINT = (
    "cti-bridge demo: Asterisk is not installed: run `sudo .ci/install-asterisk` from the "
    "source tree, or `sudo apt-get install asterisk asterisk-modules asterisk-voicemail`"
)
EXIT_INTERRUPTED = 130
WIDE = 200


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the demo like Ctrl-C: every part cleaned up


@app.command()
def demo(
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Run the round of calls, print the caller log and exit: 0 only if every call"
            " came out as expected.",
        ),
    ] = False,
    asterisk: Annotated[
        str | None,
        typer.Option("--asterisk", help="The asterisk binary [default: asterisk on PATH]."),
    ] = None,
) -> None:
    """Start a private Asterisk, a Zammad stand-in and the bridge; place a round of calls and
    show the caller log live (terminal and the web page /calls). Ctrl-C stops everything."""
    from cti_bridge.demo.lab import asterisk_version, system_asterisk

    binary = asterisk or system_asterisk()
    if binary is None or asterisk_version(binary) is None:
        print(INSTALL_HINT, file=sys.stderr)
        raise typer.Exit(EXIT_CONFIG)

    from rich.console import Console

    from cti_bridge.demo.runner import run_demo

    signal.signal(signal.SIGTERM, _interrupt)
    # Piped (CI, a log file): wide enough for every column instead of 80 truncated ones.
    console = Console(width=None if sys.stdout.isatty() else WIDE)
    try:
        code = run_demo(binary, once=once, console=console)
    except KeyboardInterrupt:
        console.print("demo stopped")
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)

"""``cti-bridge replay``: recorded AMI traces through the call model, no network."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from cti_bridge.cli.app import EXIT_CONFIG, ConfigOpt, app, fail, load_or_exit
from cti_bridge.config import CONFIG_ENV


@app.command()
def replay(
    traces: Annotated[list[Path], typer.Argument(help="AMI traces: JSON lines or a JSON array.")],
    config: ConfigOpt = None,
) -> None:
    """Feed recorded AMI traces through the call model; print the CTI events, one per line.

    No network, no AMI login: this shows exactly the form fields that would be posted.
    """
    from cti_bridge.calls.trace import TraceError, read_trace
    from cti_bridge.calls.tracker import CallRules, CallTracker

    use_config = config is not None or os.environ.get(CONFIG_ENV)
    rules = CallRules.from_config(load_or_exit(config)) if use_config else CallRules()
    tracker = CallTracker(rules)
    out = sys.stdout
    try:
        for path in traces:
            for event in read_trace(path):
                for cti in tracker.feed(event):
                    out.write(json.dumps(cti, ensure_ascii=False) + "\n")
    except TraceError as exc:
        fail(str(exc), EXIT_CONFIG)
    for cti in tracker.flush():
        out.write(json.dumps(cti, ensure_ascii=False) + "\n")

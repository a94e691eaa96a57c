"""``cti-bridge run``: the daemon in the foreground, as systemd starts it."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from cti_bridge.cli.app import ConfigOpt, InstanceOpt, app, load_or_exit, setup_logging


@app.command()
def run(
    config: ConfigOpt = None,
    instance: InstanceOpt = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning, error.")
    ] = "info",
    strict: Annotated[
        bool, typer.Option("--strict", help="Refuse a config file with secrets readable by others.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Post nothing and queue nothing: show what would be posted (status, /calls);"
            " the FastAGI hook lets every call through unchanged.",
        ),
    ] = False,
) -> None:
    """Run the daemon: watch AMI, post to Zammad, answer the FastAGI hook."""
    cfg = load_or_exit(config, strict=strict, instance=instance)
    setup_logging(log_level)
    from cti_bridge.service.daemon import run_daemon

    try:
        code = asyncio.run(run_daemon(cfg, dry_run=dry_run))
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)

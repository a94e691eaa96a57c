"""``cti-bridge outbox``: look at and act on the outbox of events waiting for Zammad."""

from __future__ import annotations

from typing import Annotated

import typer

from cti_bridge.cli.app import EXIT_CONFIG, ConfigOpt, app, fail, load_or_exit
from cti_bridge.config import Config
from cti_bridge.outbox.upgrade import old_outbox_file

outbox_app = typer.Typer(help="Look at and act on the outbox of events waiting for Zammad.")
app.add_typer(outbox_app, name="outbox")


def _outbox_config(config: ConfigOpt) -> Config:
    """The config; refused while the earlier release's outbox file still waits to be moved."""
    cfg = load_or_exit(config)
    old = old_outbox_file(cfg.outbox.path)
    if old is not None:
        fail(f"{old} holds the outbox of an earlier release; start the daemon once to move it", 1)
    return cfg


def _outbox_path(config: ConfigOpt) -> str:
    """The configured file (see ``_outbox_config``)."""
    return _outbox_config(config).outbox.path


@outbox_app.command("list")
def outbox_list(
    config: ConfigOpt = None,
    dead: Annotated[bool, typer.Option("--dead", help="List dead letters instead.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
    route: Annotated[
        str | None,
        typer.Option("--route", help='Only this route\'s events ("default" is [zammad]).'),
    ] = None,
) -> None:
    """List events waiting for Zammad (or given up on, with --dead)."""
    cfg = _outbox_config(config)
    from cti_bridge.events import DEFAULT_ROUTE
    from cti_bridge.outbox.admin import list_rows

    names = [r.name for r in cfg.route]
    if route is not None and route not in (DEFAULT_ROUTE, *names):
        known = ", ".join((DEFAULT_ROUTE, *names))
        fail(f"--route {route}: no such route in {cfg.path} (known: {known})", EXIT_CONFIG)
    typer.echo(list_rows(cfg.outbox.path, dead=dead, limit=limit, route=route, routes=names))


@outbox_app.command("retry")
def outbox_retry(config: ConfigOpt = None) -> None:
    """Move dead letters back into the outbox; the daemon retries them."""
    path = _outbox_path(config)
    from cti_bridge.outbox.admin import retry_dead

    typer.echo(retry_dead(path))


@outbox_app.command("purge")
def outbox_purge(
    config: ConfigOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dead_only: Annotated[
        bool, typer.Option("--dead-only", help="Purge only dead letters.")
    ] = False,
) -> None:
    """Delete events from the outbox (they will never reach Zammad)."""
    path = _outbox_path(config)
    from cti_bridge.outbox.admin import purge

    what = "dead letters" if dead_only else "ALL pending events and dead letters"
    if not yes and not typer.confirm(f"Delete {what} from {path}?"):
        fail("nothing purged", 1)
    typer.echo(purge(path, dead_only=dead_only))

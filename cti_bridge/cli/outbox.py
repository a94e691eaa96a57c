"""``cti-bridge outbox``: look at and act on the outbox of events waiting for Zammad."""

from __future__ import annotations

from typing import Annotated

import typer

from cti_bridge.cli.app import ConfigOpt, app, fail, load_or_exit
from cti_bridge.outbox.upgrade import old_outbox_file

outbox_app = typer.Typer(help="Look at and act on the outbox of events waiting for Zammad.")
app.add_typer(outbox_app, name="outbox")


def _outbox_path(config: ConfigOpt) -> str:
    """The configured file; refused while the earlier release's file still waits to be moved."""
    path = load_or_exit(config).outbox.path
    old = old_outbox_file(path)
    if old is not None:
        fail(f"{old} holds the outbox of an earlier release; start the daemon once to move it", 1)
    return path


@outbox_app.command("list")
def outbox_list(
    config: ConfigOpt = None,
    dead: Annotated[bool, typer.Option("--dead", help="List dead letters instead.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
) -> None:
    """List events waiting for Zammad (or given up on, with --dead)."""
    path = _outbox_path(config)
    from cti_bridge.outbox.admin import list_rows

    typer.echo(list_rows(path, dead=dead, limit=limit))


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

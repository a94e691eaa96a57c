"""``cti-bridge spool``: look at and act on the outbox of events waiting for Zammad."""

from __future__ import annotations

from typing import Annotated

import typer

from cti_bridge.cli.app import EXIT_CONFIG, ConfigOpt, app, fail, load_or_exit

spool_app = typer.Typer(help="Look at and act on the outbox of events waiting for Zammad.")
app.add_typer(spool_app, name="spool")


@spool_app.command("list")
def spool_list(
    config: ConfigOpt = None,
    dead: Annotated[bool, typer.Option("--dead", help="List dead letters instead.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
    route: Annotated[
        str | None,
        typer.Option("--route", help='Only this route\'s events ("default" is [zammad]).'),
    ] = None,
) -> None:
    """List events waiting for Zammad (or given up on, with --dead)."""
    cfg = load_or_exit(config)
    from cti_bridge.events import DEFAULT_ROUTE
    from cti_bridge.outbox.admin import list_rows

    names = [r.name for r in cfg.route]
    if route is not None and route not in (DEFAULT_ROUTE, *names):
        known = ", ".join((DEFAULT_ROUTE, *names))
        fail(f"--route {route}: no such route in {cfg.path} (known: {known})", EXIT_CONFIG)
    typer.echo(list_rows(cfg.spool.path, dead=dead, limit=limit, route=route, routes=names))


@spool_app.command("retry")
def spool_retry(config: ConfigOpt = None) -> None:
    """Move dead letters back into the outbox; the daemon retries them."""
    cfg = load_or_exit(config)
    from cti_bridge.outbox.admin import retry_dead

    typer.echo(retry_dead(cfg.spool.path))


@spool_app.command("purge")
def spool_purge(
    config: ConfigOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dead_only: Annotated[
        bool, typer.Option("--dead-only", help="Purge only dead letters.")
    ] = False,
) -> None:
    """Delete events from the outbox (they will never reach Zammad)."""
    cfg = load_or_exit(config)
    from cti_bridge.outbox.admin import purge

    what = "dead letters" if dead_only else "ALL pending events and dead letters"
    if not yes and not typer.confirm(f"Delete {what} from {cfg.spool.path}?"):
        fail("nothing purged", 1)
    typer.echo(purge(cfg.spool.path, dead_only=dead_only))

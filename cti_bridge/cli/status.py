"""``cti-bridge status`` and ``check``: what the daemon does, and can this config reach its peers.

``status`` reads only ``[status] socket`` from the file, so members of the status group need
not be able to read the secrets; ``check`` needs the whole config, since it logs in.
"""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path
from typing import Annotated

import typer

from cti_bridge.cli.app import (
    EXIT_CONFIG,
    ConfigOpt,
    InstanceOpt,
    app,
    fail,
    layout_or_exit,
    load_or_exit,
    setup_logging,
)
from cti_bridge.config import Layout, default_config_path


@app.command()
def status(
    config: ConfigOpt = None,
    instance: InstanceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    socket_path: Annotated[
        str | None, typer.Option("--socket", help="Status socket (overrides the config).")
    ] = None,
) -> None:
    """Show what the running daemon is doing (exit 3 when no daemon answers)."""
    from cti_bridge.service.status import status_command

    text, code = status_command(
        socket_path or _status_socket(config, layout_or_exit(instance)), as_json
    )
    if code == 0:
        typer.echo(text)
    else:
        typer.echo(text, err=True)
    raise typer.Exit(code)


def _status_socket(path: Path | None, layout: Layout) -> str:
    """Only ``[status] socket`` is needed: members of the status group need not read secrets.
    Without the key, the layout's socket (an instance's is in its own runtime directory)."""
    cfg_path = Path(path if path is not None else default_config_path(layout))
    try:
        data = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        fail(f"{cfg_path}: config file not found (or pass --socket)", EXIT_CONFIG)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        fail(f"{cfg_path}: cannot read config file: {exc}", EXIT_CONFIG)
    section = data.get("status", {})
    value = section.get("socket", layout.status_socket) if isinstance(section, dict) else None
    if not isinstance(value, str) or not value:
        fail(f"{cfg_path}: [status] socket: expected a path", EXIT_CONFIG)
    return value


@app.command()
def check(config: ConfigOpt = None, instance: InstanceOpt = None) -> None:
    """Check the config, the AMI login and permissions, and Zammad's endpoint and token."""
    cfg = load_or_exit(config, instance=instance)
    setup_logging("error")  # the result lines say what failed; no retry chatter
    from cti_bridge.service.checks import run_checks

    results = asyncio.run(run_checks(cfg))
    for name, ok, detail in results:
        typer.echo(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    raise typer.Exit(0 if all(ok for _, ok, _ in results) else 1)

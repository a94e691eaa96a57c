"""The ``cti-bridge`` typer app and what every command shares: config loading, logging, errors.

Errors an operator can fix are one line on stderr and a documented exit code: 2 for
configuration, 3 when no daemon answers. The commands live one group per module beside this
one and register themselves on :data:`app` when :mod:`cti_bridge.cli` is imported.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from cti_bridge import __version__
from cti_bridge.config import (
    INSTANCE_ENV,
    Config,
    ConfigError,
    Layout,
    load_config,
)

EXIT_CONFIG = 2
EXIT_NO_DAEMON = 3

app = typer.Typer(
    name="cti-bridge",
    help="Asterisk (AMI + FastAGI) to Zammad Generic CTI bridge.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file [default: $CTI_BRIDGE_CONFIG or /etc/cti-bridge/cti-bridge.toml].",
        show_default=False,
    ),
]


InstanceOpt = Annotated[
    str | None,
    typer.Option(
        "--instance",
        help=(
            "Instance NAME of the template unit cti-bridge@NAME: config /etc/cti-bridge/NAME.toml,"
            " outbox and status socket in its directories [default: $CTI_BRIDGE_INSTANCE]."
        ),
        show_default=False,
    ),
]


def layout_or_exit(instance: str | None = None) -> Layout:
    """The layout of ``instance``, else of $CTI_BRIDGE_INSTANCE (which the template unit sets),
    else the plain unit's."""
    try:
        return Layout.of(instance if instance is not None else os.environ.get(INSTANCE_ENV))
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"cti-bridge: {message}", err=True)
    raise typer.Exit(code)


def load_or_exit(path: Path | None, *, strict: bool = False, instance: str | None = None) -> Config:
    layout = layout_or_exit(instance)
    try:
        cfg = load_config(path, strict=strict, layout=layout)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    for warning in cfg.warnings:
        typer.echo(f"cti-bridge: warning: {warning}", err=True)
    return cfg


def setup_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        fail(f"--log-level: unknown level {level!r}", EXIT_CONFIG)
    logging.basicConfig(
        level=numeric,
        stream=sys.stderr,
        # journald adds its own timestamps; the level name helps grep.
        format="%(levelname)s %(name)s: %(message)s",
    )


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"cti-bridge {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """Connect an Asterisk PBX to Zammad's caller log."""


def main() -> None:
    app()

"""The ``cti-bridge`` command line.

Each command is a thin shell over a module: ``run`` -> daemon, ``status`` -> status,
``replay`` -> tracker, ``send``/``spool`` -> zammad/outbox. Errors an operator can fix are one
line on stderr and a documented exit code: 2 for configuration, 3 when no daemon answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import tomllib
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from cti_bridge import __version__
from cti_bridge.config import (
    CONFIG_ENV,
    Config,
    ConfigError,
    StatusConfig,
    default_config_path,
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
spool_app = typer.Typer(help="Look at and act on the outbox of events waiting for Zammad.")
app.add_typer(spool_app, name="spool")
config_app = typer.Typer(help="About the configuration file.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file [default: $CTI_BRIDGE_CONFIG or /etc/cti-bridge/cti-bridge.toml].",
        show_default=False,
    ),
]


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"cti-bridge: {message}", err=True)
    raise typer.Exit(code)


def _config(path: Path | None, *, strict: bool = False) -> Config:
    try:
        cfg = load_config(path, strict=strict)
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    for warning in cfg.warnings:
        typer.echo(f"cti-bridge: warning: {warning}", err=True)
    return cfg


def _setup_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        _fail(f"--log-level: unknown level {level!r}", EXIT_CONFIG)
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


@app.command()
def run(
    config: ConfigOpt = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning, error.")
    ] = "info",
    strict: Annotated[
        bool, typer.Option("--strict", help="Refuse a config file with secrets readable by others.")
    ] = False,
) -> None:
    """Run the daemon: watch AMI, post to Zammad, answer the FastAGI hook."""
    cfg = _config(config, strict=strict)
    _setup_logging(log_level)
    from cti_bridge.service.daemon import run_daemon

    try:
        code = asyncio.run(run_daemon(cfg))
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


@app.command()
def status(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    socket_path: Annotated[
        str | None, typer.Option("--socket", help="Status socket (overrides the config).")
    ] = None,
) -> None:
    """Show what the running daemon is doing (exit 3 when no daemon answers)."""
    from cti_bridge.service.status import status_command

    text, code = status_command(socket_path or _status_socket(config), as_json)
    if code == 0:
        typer.echo(text)
    else:
        typer.echo(text, err=True)
    raise typer.Exit(code)


def _status_socket(path: Path | None) -> str:
    """Only ``[status] socket`` is needed: members of the status group need not read secrets."""
    cfg_path = Path(path if path is not None else default_config_path())
    try:
        data = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        _fail(f"{cfg_path}: config file not found (or pass --socket)", EXIT_CONFIG)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        _fail(f"{cfg_path}: cannot read config file: {exc}", EXIT_CONFIG)
    section = data.get("status", {})
    value = section.get("socket", StatusConfig().socket) if isinstance(section, dict) else None
    if not isinstance(value, str) or not value:
        _fail(f"{cfg_path}: [status] socket: expected a path", EXIT_CONFIG)
    return value


@app.command()
def check(config: ConfigOpt = None) -> None:
    """Check the config, the AMI login and permissions, and Zammad's endpoint and token."""
    cfg = _config(config)
    _setup_logging("error")  # the result lines say what failed; no retry chatter
    from cti_bridge.service.checks import run_checks

    results = asyncio.run(run_checks(cfg))
    for name, ok, detail in results:
        typer.echo(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    raise typer.Exit(0 if all(ok for _, ok, _ in results) else 1)


@app.command()
def send(
    event: Annotated[str, typer.Argument(help="newCall, answer or hangup.")],
    fields: Annotated[
        list[str] | None, typer.Argument(help="key=value form fields; repeat user[]=Name.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Post one hand-made event to Zammad and print its answer."""
    cfg = _config(config)
    body: dict[str, str | list[str]] = {"event": event}
    for item in fields or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"expected key=value, got {item!r}", EXIT_CONFIG)
        if key.endswith("[]"):
            existing = body.get(key)
            body[key] = [*existing, value] if isinstance(existing, list) else [value]
        else:
            body[key] = value
    from cti_bridge.zammad.client import ZammadError, send_once

    try:
        answer = asyncio.run(send_once(cfg.zammad, body))
    except ZammadError as exc:
        _fail(str(exc), 1)
    typer.echo(json.dumps(_answer_dict(answer)))


def _answer_dict(answer: object) -> dict[str, object]:
    fields = ("action", "caller_id", "number")
    return {f: getattr(answer, f) for f in fields if getattr(answer, f, None) is not None}


@spool_app.command("list")
def spool_list(
    config: ConfigOpt = None,
    dead: Annotated[bool, typer.Option("--dead", help="List dead letters instead.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
) -> None:
    """List events waiting for Zammad (or given up on, with --dead)."""
    cfg = _config(config)
    from cti_bridge.outbox.admin import list_rows

    typer.echo(list_rows(cfg.spool.path, dead=dead, limit=limit))


@spool_app.command("retry")
def spool_retry(config: ConfigOpt = None) -> None:
    """Move dead letters back into the outbox; the daemon retries them."""
    cfg = _config(config)
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
    cfg = _config(config)
    from cti_bridge.outbox.admin import purge

    what = "dead letters" if dead_only else "ALL pending events and dead letters"
    if not yes and not typer.confirm(f"Delete {what} from {cfg.spool.path}?"):
        _fail("nothing purged", 1)
    typer.echo(purge(cfg.spool.path, dead_only=dead_only))


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of the config file (for editors: see README "Editor support")."""
    from cti_bridge.config import config_json_schema

    typer.echo(json.dumps(config_json_schema(), indent=2))


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
    rules = CallRules.from_config(_config(config)) if use_config else CallRules()
    tracker = CallTracker(rules)
    out = sys.stdout
    try:
        for path in traces:
            for event in read_trace(path):
                for cti in tracker.feed(event):
                    out.write(json.dumps(cti, ensure_ascii=False) + "\n")
    except TraceError as exc:
        _fail(str(exc), EXIT_CONFIG)
    for cti in tracker.flush():
        out.write(json.dumps(cti, ensure_ascii=False) + "\n")


def main() -> None:
    app()

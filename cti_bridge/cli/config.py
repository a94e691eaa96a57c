"""``cti-bridge config``: about the configuration file (its JSON Schema, for editors)."""

from __future__ import annotations

import json

import typer

from cti_bridge.cli.app import app

config_app = typer.Typer(help="About the configuration file.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of the config file (for editors: see README "Editor support")."""
    from cti_bridge.config import config_json_schema

    typer.echo(json.dumps(config_json_schema(), indent=2))

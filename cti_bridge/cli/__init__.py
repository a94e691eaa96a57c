"""The ``cti-bridge`` command line (typer): each command is a thin shell over one part."""

from cti_bridge.cli.app import app, main

__all__ = ["app", "main"]

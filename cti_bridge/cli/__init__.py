"""The ``cti-bridge`` command line (typer): each command is a thin shell over one part.

``app`` holds the typer app and what every command shares (config loading, logging, exit
codes); one module per command group: ``run``, ``status`` (with ``check``), ``send``,
``replay``, ``outbox`` (list, retry, purge) and ``config``. Importing the package registers every
command group on the app, whichever module is imported.
"""

import importlib

from cti_bridge.cli.app import app, main

# Each module registers its commands on ``app`` when imported; ``--help`` lists them in this
# order, the order an operator meets them in (run it, watch it, test it, then the tools).
COMMAND_MODULES = ("run", "status", "send", "replay", "outbox", "dial", "config", "demo")
for _name in COMMAND_MODULES:
    importlib.import_module(f"cti_bridge.cli.{_name}")

__all__ = ["app", "main"]

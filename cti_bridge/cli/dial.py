"""``cti-bridge dial-link EXT``: an agent's click-to-dial link, or its revocation.

Works beside the running daemon: the serial lives in the outbox database, which the daemon
reads on every dial request, so ``--revoke`` takes effect at once.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cti_bridge.cli.app import EXIT_CONFIG, ConfigOpt, app, fail, load_or_exit
from cti_bridge.config import EXTENSION


@app.command("dial-link")
def dial_link(
    ext: Annotated[str, typer.Argument(help="The agent's extension, e.g. 201.")],
    config: ConfigOpt = None,
    handler: Annotated[
        bool,
        typer.Option("--handler", help="Print only the handler URL template (%s = the tel: URL)."),
    ] = False,
    revoke: Annotated[
        bool, typer.Option("--revoke", help="Invalidate the agent's links, then print the new one.")
    ] = False,
) -> None:
    """Print the agent's personal click-to-dial setup page URL (keep it private)."""
    cfg = load_or_exit(config)
    if not cfg.dial.enabled:
        fail(f"{cfg.path}: [dial] is not configured (click-to-dial is off)", EXIT_CONFIG)
    if not EXTENSION.fullmatch(ext):
        fail(f"{ext!r} is not an extension (letters, digits, _ . -)", EXIT_CONFIG)
    assert cfg.web.public_url is not None  # the config requires it with [dial]
    from cti_bridge.dial.keys import LinkKeys
    from cti_bridge.dial.links import handler_template, setup_url
    from cti_bridge.outbox.store import Outbox

    with Outbox(cfg.outbox.path) as box:
        serial = box.bump_dial_serial(ext) if revoke else box.dial_serial(ext)
    keys = LinkKeys(cfg.dial.secret)
    if revoke:
        typer.echo(f"cti-bridge: the earlier links of {ext} no longer work", err=True)
    make = handler_template if handler else setup_url
    typer.echo(make(cfg.web.public_url, keys, ext, serial))

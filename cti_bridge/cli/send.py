"""``cti-bridge send``: one hand-made event to Zammad, to test the endpoint and its answers."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from cti_bridge.cli.app import EXIT_CONFIG, ConfigOpt, app, fail, load_or_exit


@app.command()
def send(
    event: Annotated[str, typer.Argument(help="newCall, answer or hangup.")],
    fields: Annotated[
        list[str] | None, typer.Argument(help="key=value form fields; repeat user[]=Name.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Post one hand-made event to Zammad and print its answer."""
    cfg = load_or_exit(config)
    body: dict[str, str | list[str]] = {"event": event}
    for item in fields or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"expected key=value, got {item!r}", EXIT_CONFIG)
        if key.endswith("[]"):
            existing = body.get(key)
            body[key] = [*existing, value] if isinstance(existing, list) else [value]
        else:
            body[key] = value
    from cti_bridge.zammad import ZammadError, send_once

    try:
        answer = asyncio.run(send_once(cfg.zammad, body))
    except ZammadError as exc:
        fail(str(exc), 1)
    typer.echo(json.dumps(_answer_dict(answer)))


def _answer_dict(answer: object) -> dict[str, object]:
    fields = ("action", "caller_id", "number")
    return {f: getattr(answer, f) for f in fields if getattr(answer, f, None) is not None}

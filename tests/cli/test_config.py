"""``cti-bridge config schema``: the JSON Schema editors validate the config file with."""

from __future__ import annotations

import json

from tests.support.cli import cli


def test_schema_is_json_with_every_section() -> None:
    res = cli("config", "schema")
    assert res.returncode == 0, res.stderr
    schema = json.loads(res.stdout)
    assert {"ami", "zammad", "agi", "outbox", "status"} <= set(schema["properties"])

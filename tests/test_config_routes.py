"""[[route]] tables: one-line errors naming the route, secrets from files, [zammad] url optional."""

from __future__ import annotations

from pathlib import Path

import pytest

from cti_bridge.config import ConfigError, config_json_schema, load_config
from tests.support.cli import cli
from tests.test_config import GOOD, TOKEN, write

ACME = f"""
[[route]]
name = "acme"
url = "https://acme.example/api/v1/cti/{TOKEN}"
to = ["4930555100", "+49305551*"]

[[route]]
name = "sales"
url_file = "sales-url"
queue = ["sales-*"]
context = ["from-sales"]
endpoint = ["sales-*"]
"""


def test_routes_are_read_in_order_with_url_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "sales-url").write_text(f"https://sales.example/api/v1/cti/{TOKEN}\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = load_config(write(tmp_path, GOOD + ACME))
    assert [r.name for r in cfg.route] == ["acme", "sales"]
    acme, sales = cfg.route
    assert acme.to == ("4930555100", "+49305551*") and acme.queue == ()
    assert sales.url.get().endswith(TOKEN) and sales.context == ("from-sales",)
    assert sales.display_url == "https://sales.example/api/v1/cti/***"
    assert TOKEN not in repr(cfg)


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ('name = "b"\nurl = "http://b/api/v1/cti/T"', r"\[\[route\]\] #2 \(b\) to: a route needs"),
        ('name = "b"\nto = ["1"]', r"\[\[route\]\] #2 \(b\) url: missing required key \(or url_f"),
        ('name = "acme"\nurl = "http://b/x/T"\nto = ["1"]', r"#2 \(acme\) name: another"),
        ('name = "default"\nurl = "http://b/x/T"\nto = ["1"]', r"#2 \(default\) name: \"default"),
        ('name = "a b"\nurl = "http://b/x/T"\nto = ["1"]', r"#2 \(a b\) name: expected letters"),
        ('url = "http://b/x/T"\nto = ["1"]', r"\[\[route\]\] #2 name: missing required key"),
        ('name = "b"\nurl = "http://b/x/T"\nto = "1"', r"#2 \(b\) to: expected a list"),
        ('name = "b"\nurl = "http://b/x/T"\nto = [""]', r"#2 \(b\) to: must not be empty"),
        ('name = "b"\nurl = "ftp://b/x/T"\nto = ["1"]', r"#2 \(b\) url: expected an http"),
        ('name = "b"\nurl = "http://b/x/T"\nto = ["1"]\ncolour = 1', r"#2 \(b\) colour: unknown"),
        ('name = "b"\nurl_file = "none"\nto = ["1"]', r"#2 \(b\) url_file: cannot read"),
    ],
)
def test_route_mistakes_are_one_line_naming_the_route(
    tmp_path: Path, route: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_config(
            write(
                tmp_path,
                GOOD + ACME.split('[[route]]\nname = "sales"')[0] + "[[route]]\n" + route + "\n",
            )
        )
    assert "\n" not in str(err.value) and "/x/T" not in str(err.value)


def test_zammad_url_is_optional_only_with_routes(tmp_path: Path) -> None:
    no_url = GOOD.replace(f'url = "https://zammad.example.com/api/v1/cti/{TOKEN}"', "")
    with pytest.raises(ConfigError, match=r"\[zammad\] url: missing required key"):
        load_config(write(tmp_path, no_url))
    cfg = load_config(write(tmp_path, no_url + ACME.split('[[route]]\nname = "sales"')[0]))
    assert cfg.zammad.url.get() == "" and cfg.route[0].name == "acme"


def test_route_written_as_a_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[route\] must be written as \[\[route\]\] tables"):
        load_config(write(tmp_path, GOOD + '[route]\nname = "a"\n'))


def test_schema_describes_routes() -> None:
    route = config_json_schema()["$defs"]["RouteConfig"]
    assert route["required"] == ["name"]
    assert {"url", "url_file", "to", "queue", "context", "endpoint"} <= set(route["properties"])


def test_cli_exits_2_on_a_route_mistake(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + '[[route]]\nname = "x"\nurl = "http://b/x/T"\n')
    result = cli("outbox", "list", "-c", str(path))
    assert result.returncode == 2
    assert "[[route]] #1 (x) to: a route needs" in result.stderr


def test_outbox_list_by_route(tmp_path: Path) -> None:
    text = GOOD + ACME.split('[[route]]\nname = "sales"')[0]
    text += f'\n[outbox]\npath = "{tmp_path / "o.sqlite3"}"\n'
    path = write(tmp_path, text)
    result = cli("outbox", "list", "-c", str(path), "--route", "acme")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("0 pending event(s) of route acme")
    result = cli("outbox", "list", "-c", str(path), "--route", "nobody")
    assert result.returncode == 2
    assert "--route nobody: no such route" in result.stderr and "default, acme" in result.stderr

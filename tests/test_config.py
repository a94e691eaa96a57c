"""Config loading: every mistake is one line naming the file and the key; secrets stay hidden."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cti_bridge.config import (
    AgiConfig,
    Config,
    ConfigError,
    Layout,
    NumbersConfig,
    OutboxConfig,
    Secret,
    StatusConfig,
    WebConfig,
    ZammadConfig,
    config_json_schema,
    file_keys,
    load_config,
    parse_config,
    redact_url,
    split_listen,
)
from tests.support.cli import cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "conf" / "cti-bridge.toml"
TOKEN = "S3cr3tT0k3n"
GOOD = f"""
[ami]
host = "127.0.0.1"
port = 5038
username = "cti"
secret = "amisecret"

[zammad]
url = "https://zammad.example.com/api/v1/cti/{TOKEN}"
max_age = "12h"

[pbx]
trunk_endpoints = ["carrier", "voipgrid-siproute-*"]
report_internal = true

[users]
"101" = "Alice Agent"

[numbers]
region = "de"

[agi]
listen = "127.0.0.1:4573"
"""


def write(tmp: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp / "cti-bridge.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def good_with(section: str, line: str) -> str:
    """GOOD with ``line`` in [section], replacing that key's line if GOOD sets it."""
    key = line.split(" = ")[0]
    out, current, done = [], "", False
    for raw in GOOD.splitlines():
        if raw.startswith("["):
            current = raw
        if current == f"[{section}]" and raw.startswith(f"{key} = "):
            continue
        out.append(raw)
        if raw == f"[{section}]":
            out.append(line)
            done = True
    if not done:
        out += [f"[{section}]", line]
    return "\n".join(out) + "\n"


def refused(tmp: Path, text: str) -> str:
    """The one-line message for a config that must be refused; it never shows a secret."""
    path = write(tmp, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    assert TOKEN not in message and "amisecret" not in message
    return message


def test_good_config_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.ami.username == "cti"
    assert cfg.ami.secret.get() == "amisecret"
    assert cfg.zammad.max_age == 12 * 3600
    assert cfg.pbx.trunk_endpoints == ("carrier", "voipgrid-siproute-*")
    assert cfg.pbx.report_internal is True
    assert cfg.users == {"101": "Alice Agent"}
    assert cfg.numbers == NumbersConfig(region="DE")
    assert cfg.agi.host_port == ("127.0.0.1", 4573)
    assert cfg.zammad.display_url == "https://zammad.example.com/api/v1/cti/***"
    assert TOKEN not in repr(cfg) and "amisecret" not in repr(cfg)
    assert cfg.warnings == ()
    assert cfg.path == str(tmp_path / "cti-bridge.toml")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("[ami]\n", "[ami]\nusernme = 'x'\n"), "[ami] usernme: unknown key"),
        (("port = 5038", 'port = "5038"'), "[ami] port: must be a whole number >= 1 and <= 65535"),
        (("port = 5038", "port = 70000"), "[ami] port: must be a whole number >= 1 and <= 65535"),
        (("port = 5038", "port = 5038.0"), "[ami] port: must be a whole number"),
        (('username = "cti"\n', ""), "[ami] username: missing required key"),
        (('username = "cti"', 'username = "  "'), "[ami] username: must not be empty"),
        (('secret = "amisecret"\n', ""), "[ami] secret: missing required key (or secret_file)"),
        (('max_age = "12h"', 'max_age = "soon"'), "[zammad] max_age: must be a finite number > 0"),
        (('max_age = "12h"', 'max_age = "12 hours"'), "[zammad] max_age: must be a finite"),
        (("report_internal = true", "report_internal = 1"), "[pbx] report_internal: expected true"),
        (
            ('["carrier", "voipgrid-siproute-*"]', '"carrier"'),
            "[pbx] trunk_endpoints: expected a list",
        ),
        (('["carrier", "voipgrid-siproute-*"]', "[1]"), "[pbx] trunk_endpoints: expected a str"),
        (('region = "de"', 'region = "XX"'), "[numbers] region: expected an ISO 3166 country code"),
        (('region = "de"', 'region = "DEU"'), "[numbers] region: expected an ISO 3166"),
        (('region = "de"', "region = 49"), "[numbers] region: expected a string"),
        (('"127.0.0.1:4573"', '"4573"'), "[agi] listen: expected host:port"),
        (('"127.0.0.1:4573"', '"::1:4573"'), "[agi] listen: expected host:port"),
        (('"127.0.0.1:4573"', '"0.0.0.0:4573"'), "[agi] allow: required when listen is not"),
        (
            ('"127.0.0.1:4573"', '"127.0.0.1:4573"\nallow = ["pbx.example"]'),
            "[agi] allow: 'pbx.example' is not an IP address or network",
        ),
        (("[numbers]", "[nmbers]"), "unknown section [nmbers]"),
        (('"101" = "Alice Agent"', '"101" = 101'), "[users] 101: expected a non-empty name"),
        (('"101" = "Alice Agent"', '"101" = ""'), "[users] 101: expected a non-empty name"),
        (("url = ", "url = 5\nxurl = "), "[zammad] url: expected a string"),
        (("https://", "ftp://"), "[zammad] url: expected an http(s):// URL"),
        (("zammad.example.com/", "zammad.example.com:0/"), "[zammad] url: expected an http(s)://"),
        (("zammad.example.com/", "zammad.example.com:99999/"), "[zammad] url: expected an http"),
    ],
)
def test_bad_config_names_file_and_key(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    old, new = change
    assert old in GOOD
    assert message in refused(tmp_path, GOOD.replace(old, new, 1))


@pytest.mark.parametrize("section", ["ami", "users"])
def test_a_section_must_be_a_table(tmp_path: Path, section: str) -> None:
    with pytest.raises(ConfigError, match=rf"\[{section}\] must be a table"):
        parse_config({**tomllib.loads(GOOD), section: 5}, tmp_path / "c.toml")


# ----------------------------------------------------------------------------- numbers


def _numeric_keys() -> list[tuple[str, str, dict[str, Any]]]:
    """(section, key, number schema) of every numeric key, read from the schema itself."""
    defs = config_json_schema()["$defs"]
    keys = []
    for section, names in file_keys().items():
        props = defs[type(getattr(Config(), section)).__name__]["properties"]
        for key in names:
            alternatives = props[key].get("anyOf", [props[key]])
            numbers = [a for a in alternatives if a.get("type") in ("number", "integer")]
            if numbers:
                keys.append((section, key, numbers[0]))
    return keys


NUMERIC = _numeric_keys()


def test_the_numeric_keys_are_found() -> None:
    """Guards the derivation above: it must see the keys the README documents as numbers."""
    found = {(s, k) for s, k, _ in NUMERIC}
    assert {("zammad", "timeout"), ("agi", "timeout"), ("zammad", "max_age")} <= found
    assert {("ami", "port"), ("zammad", "concurrency"), ("pbx", "max_calls")} <= found
    assert len(found) == 12


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "-1", "0", "1e12", "true", '"1x"'])
@pytest.mark.parametrize(("section", "key", "schema"), NUMERIC, ids=[k for s, k, _ in NUMERIC])
def test_every_numeric_key_refuses_non_finite_and_out_of_range(
    tmp_path: Path, section: str, key: str, schema: dict[str, Any], bad: str
) -> None:
    message = refused(tmp_path, good_with(section, f"{key} = {bad}"))
    assert f"[{section}] {key}: must be a " in message
    if "exclusiveMinimum" in schema:
        assert "> 0" in message
    else:
        assert ">= 1" in message
    assert f"<= {schema['maximum']}" in message


@given(st.data())
def test_every_numeric_key_takes_any_value_in_its_range(data: st.DataObject) -> None:
    section, key, schema = data.draw(st.sampled_from(NUMERIC))
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    if schema["type"] == "integer":
        value: float = data.draw(st.integers(low, schema["maximum"]))
    else:
        value = data.draw(
            st.floats(low, schema["maximum"], exclude_min="exclusiveMinimum" in schema)
        )
    raw = tomllib.loads(GOOD)
    raw.setdefault(section, {})[key] = value
    cfg = parse_config(raw)
    got = getattr(getattr(cfg, section), key)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("24h", 86400.0), ("1d", 86400.0), (" 2 ", 2.0)],
)
def test_durations(text: str, seconds: float) -> None:
    raw = tomllib.loads(GOOD)
    raw["zammad"]["max_age"] = text
    raw["zammad"]["max_backoff"] = text
    cfg = parse_config(raw)
    assert cfg.zammad.max_age == seconds and cfg.zammad.max_backoff == seconds


@given(st.integers(1, 10**6), st.sampled_from(["ms", "s", "m", "h", "d"]))
def test_a_duration_string_is_its_number_times_the_unit(n: int, unit: str) -> None:
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    raw = tomllib.loads(GOOD)
    raw["zammad"]["max_age"] = f"{n}{unit}"
    if n * factor > 365 * 86400:
        with pytest.raises(ConfigError, match=r"\[zammad\] max_age: must be a finite number"):
            parse_config(raw)
    else:
        assert parse_config(raw).zammad.max_age == pytest.approx(n * factor)


def test_code_gets_the_same_checks() -> None:
    """The classes the daemon reads are the schema: building one in code validates too."""
    assert AgiConfig(listen="127.0.0.1:0").host_port == ("127.0.0.1", 0)
    assert AgiConfig(listen="[::1]:4573").host_port == ("::1", 4573)
    cfg = ZammadConfig(url=Secret("http://127.0.0.1:1/api/v1/cti/tok"), timeout=1.0)
    assert cfg.timeout == 1.0 and cfg.url.get().endswith("/tok")
    assert ZammadConfig(url=Secret("http://x/a"), timeout=1).timeout == 1.0
    full = Config(zammad=cfg, outbox=OutboxConfig(path="/tmp/x.sqlite3"), users={"101": "A"})
    assert full.users == {"101": "A"} and full.outbox.path == "/tmp/x.sqlite3"
    assert WebConfig().listen == "" and NumbersConfig().region is None
    for bad in (math.nan, math.inf, -1.0, 0, True, "2x", 61):
        with pytest.raises(ValidationError):
            AgiConfig(timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        AgiConfig(listn="x")  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.timeout = 2.0  # type: ignore[misc]
    assert dataclasses.replace(cfg, concurrency=3).concurrency == 3
    with pytest.raises(ValidationError):
        dataclasses.replace(cfg, concurrency=257)


def test_validation_errors_from_code_do_not_show_the_token() -> None:
    for value in (Secret(f"ftp://z/api/v1/cti/{TOKEN}"), f"ftp://z/api/v1/cti/{TOKEN}"):
        with pytest.raises(ValidationError) as err:
            ZammadConfig(url=value)  # type: ignore[arg-type]
        assert TOKEN not in str(err.value)


# ----------------------------------------------------------------------------- numbers plan


@pytest.mark.parametrize("key", ["country_code", "national_prefix", "international_prefix"])
def test_old_number_keys_name_their_replacement(tmp_path: Path, key: str) -> None:
    message = refused(tmp_path, GOOD.replace('region = "de"', f'{key} = "0"'))
    assert message.endswith(
        f'[numbers] {key}: no longer supported; set region = "DE" (ISO 3166 country code) instead'
    )


def test_region_is_optional_and_normalised() -> None:
    raw = tomllib.loads(GOOD)
    raw["numbers"] = {"region": " gb "}
    assert parse_config(raw).numbers == NumbersConfig(region="GB")
    del raw["numbers"]
    assert parse_config(raw).numbers == NumbersConfig(region=None)
    assert [f.name for f in dataclasses.fields(NumbersConfig)] == ["region"]


# ----------------------------------------------------------------------------- secrets


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write(tmp_path, "[ami\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_secret_files_and_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "ami-secret").write_text("fromcreds\n")
    (creds / "zammad-url").write_text(f"https://z.example/api/v1/cti/{TOKEN}\n")
    text = GOOD.replace('secret = "amisecret"', 'secret_file = "ami-secret"').replace(
        f'url = "https://zammad.example.com/api/v1/cti/{TOKEN}"', 'url_file = "zammad-url"'
    )
    path = write(tmp_path, text, 0o644)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = load_config(path)
    assert cfg.ami.secret.get() == "fromcreds"
    assert cfg.zammad.url.get().endswith(TOKEN)
    # No secret inline: a world-readable file is fine.
    assert cfg.warnings == ()
    # A bad URL in the file is reported on url_file, without the token.
    (creds / "zammad-url").write_text(f"ftp://z.example/api/v1/cti/{TOKEN}\n")
    with pytest.raises(ConfigError, match=r"\[zammad\] url_file: expected an http") as err:
        load_config(path)
    assert TOKEN not in str(err.value)
    (creds / "zammad-url").write_text("\n")
    with pytest.raises(ConfigError, match=r"\[zammad\] url_file: .*zammad-url is empty"):
        load_config(path)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(ConfigError, match=r"\[ami\] secret_file: cannot read"):
        load_config(path)


def test_world_readable_secret_warns_or_refuses(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD, 0o644)
    cfg = load_config(path)
    assert cfg.warnings and "readable by others" in cfg.warnings[0]
    with pytest.raises(ConfigError, match="readable by others"):
        load_config(path, strict=True)


def test_both_inline_and_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('secret = "amisecret"', 'secret = "a"\nsecret_file = "b"'))
    with pytest.raises(ConfigError, match="either secret or secret_file"):
        load_config(path)


def test_redaction_and_helpers() -> None:
    assert redact_url(f"https://z/api/v1/cti/{TOKEN}") == "https://z/api/v1/cti/***"
    assert redact_url(f"https://user:pw@z/x/{TOKEN}") == "https://***@z/x/***"
    assert TOKEN not in repr(Secret(TOKEN)) and TOKEN not in str(Secret(TOKEN))
    assert split_listen("[::1]:4573") == ("::1", 4573)
    with pytest.raises(ValueError):
        split_listen("localhost")


def test_cli_exit_2_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("[ami]\n", "[ami]\nbogus = 1\n"))
    res = cli("check", "--config", str(path))
    assert res.returncode == 2
    assert res.stderr.strip() == f"cti-bridge: {path}: [ami] bogus: unknown key"
    path = write(tmp_path, GOOD.replace("[agi]\n", "[agi]\ntimeout = nan\n"))
    res = cli("check", "--config", str(path))
    assert res.returncode == 2
    assert res.stderr.strip().startswith(
        f"cti-bridge: {path}: [agi] timeout: must be a finite number > 0 and <= 60"
    )


LINE = f'url = "https://zammad.example.com/api/v1/cti/{TOKEN}"'


def test_proxy_is_checked_and_its_password_kept_secret(tmp_path: Path) -> None:
    with_proxy = GOOD.replace(LINE, LINE + '\nproxy = "http://squid:pr0xy-pw@proxy.lan:3128"')
    cfg = load_config(write(tmp_path, with_proxy))
    assert cfg.zammad.proxy is not None
    assert cfg.zammad.proxy.get() == "http://squid:pr0xy-pw@proxy.lan:3128"
    assert cfg.zammad.display_proxy == "http://proxy.lan:3128"
    assert "pr0xy-pw" not in repr(cfg)
    # A proxy password makes the file a secret's holder even with the other secrets in files.
    shared = write(tmp_path, with_proxy, 0o644)
    assert any("readable by others" in w for w in load_config(shared).warnings)
    tls = GOOD.replace(LINE, LINE + '\nproxy = "https://proxy.lan"')
    assert load_config(write(tmp_path, tls)).zammad.display_proxy == "https://proxy.lan"


@pytest.mark.parametrize(
    "proxy",
    [
        "socks5://squid:pr0xy-pw@proxy.lan:3128",
        "http://squid:pr0xy-pw@proxy.lan:3128/path",
        "http://squid:pr0xy-pw@proxy.lan:3128/?q=1",
        "http://squid:pr0xy-pw@proxy.lan:0",
        "http://squid:pr0xy-pw@proxy.lan:65536",
        "http://squid:pr0xy-pw@",
    ],
)
def test_bad_proxy_is_refused_without_its_password(tmp_path: Path, proxy: str) -> None:
    message = refused(tmp_path, GOOD.replace(LINE, LINE + f'\nproxy = "{proxy}"'))
    assert "[zammad] proxy: expected a proxy URL http(s)://" in message
    assert "pr0xy-pw" not in message and "squid" not in message


# ----------------------------------------------------------------------------- schema


def test_config_schema_command_prints_the_schema_of_the_example() -> None:
    res = cli("config", "schema")
    assert res.returncode == 0, res.stderr
    schema = json.loads(res.stdout)
    assert schema == json.loads(json.dumps(config_json_schema()))
    assert schema["additionalProperties"] is False
    assert "path" not in schema["properties"] and "warnings" not in schema["properties"]
    example = tomllib.loads(EXAMPLE.read_text())
    assert_fits(schema, example)


def assert_fits(schema: dict[str, Any], document: dict[str, Any]) -> None:
    """The parts of JSON Schema this schema uses: known keys, types, enum, bounds.

    (No JSON Schema validator is a dependency; the loader itself is the other half of the
    check, in test_schema_and_loader_agree.)
    """
    defs = schema["$defs"]
    for section, body in document.items():
        prop = schema["properties"][section]
        prop = defs[prop["$ref"].rsplit("/", 1)[1]] if "$ref" in prop else prop
        if prop.get("additionalProperties") is False:
            assert set(body) <= set(prop["properties"]), (section, set(body))
        for key, value in body.items():
            sub = prop["properties"][key] if "properties" in prop else prop["additionalProperties"]
            assert any(_fits(alt, value) for alt in sub.get("anyOf", [sub])), (section, key)


def _fits(schema: dict[str, Any], value: object) -> bool:
    kinds = {"string": str, "integer": int, "number": int | float, "boolean": bool, "array": list}
    kind = schema.get("type")
    if kind and not isinstance(value, kinds[kind]):
        return False
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if isinstance(value, int | float):
        if "maximum" in schema and value > schema["maximum"]:
            return False
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            return False
        if "minimum" in schema and value < schema["minimum"]:
            return False
    if isinstance(value, list):
        return all(_fits(schema.get("items", {}), v) for v in value)
    return True


def test_schema_and_loader_agree(tmp_path: Path) -> None:
    """The example loads, and a value the schema refuses the loader refuses too."""
    (tmp_path / "ami-secret").write_text("s\n")
    (tmp_path / "zammad-url").write_text("https://z/api/v1/cti/t\n")
    path = tmp_path / "cti-bridge.toml"
    path.write_text(EXAMPLE.read_text())
    load_config(path)
    schema = config_json_schema()
    example = tomllib.loads(EXAMPLE.read_text())
    example["zammad"]["timeout"] = -1
    with pytest.raises(AssertionError):
        assert_fits(schema, example)
    with pytest.raises(AssertionError):
        assert_fits(schema, {"ami": {"bogus": 1}})
    assert set(schema["$defs"]["AmiConfig"]["required"]) == {"username"}


# ----------------------------------------------------------------------------- renamed sections


def test_the_spool_section_names_its_new_name(tmp_path: Path) -> None:
    text = GOOD + '\n[spool]\npath = "/tmp/x.sqlite3"\n'
    message = refused(tmp_path, text)
    assert message == f"{tmp_path / 'cti-bridge.toml'}: [spool] path: renamed to [outbox]; " + (
        "rename the section"
    )
    for command in ("run", "check"):
        res = cli(command, "--config", str(write(tmp_path, text)))
        assert res.returncode == 2, command
        assert res.stderr.strip().splitlines() == [f"cti-bridge: {message}"]


# ---------------------------------------------------------------------------------------------
# Layout: the template unit's instances


def test_an_instance_puts_unset_paths_into_its_own_directories(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    plain = load_config(path)
    pbx1 = load_config(path, layout=Layout.of("pbx1"))
    assert (plain.outbox.path, plain.status.socket) == (OutboxConfig().path, StatusConfig().socket)
    assert pbx1.outbox.path == "/var/lib/cti-bridge/pbx1/outbox.sqlite3"
    assert pbx1.status.socket == "/run/cti-bridge/pbx1/status.sock"
    assert Layout.of("pbx1").config == "/etc/cti-bridge/pbx1.toml"
    assert Layout.of(None) == Layout.of("") == Layout()
    # What the file sets wins over the instance's defaults.
    text = good_with("status", f'socket = "{tmp_path}/s.sock"')
    set_in_file = load_config(write(tmp_path, text), layout=Layout.of("pbx1"))
    assert set_in_file.status.socket == f"{tmp_path}/s.sock"
    assert set_in_file.outbox.path == pbx1.outbox.path


@pytest.mark.parametrize("name", ["..", "../x", "a/b", ".a", "-a", "a b", "ä", "x" * 65])
def test_an_instance_name_must_stay_inside_its_directories(name: str) -> None:
    with pytest.raises(ConfigError, match=r"^instance .*: expected letters"):
        Layout.of(name)


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True))
def test_every_valid_instance_name_gives_paths_below_its_directories(name: str) -> None:
    layout = Layout.of(name)
    paths = [layout.config, *layout.defaults.values()]
    assert [os.path.normpath(p) for p in paths] == paths  # nothing for the kernel to resolve
    assert [str(Path(p).parent) for p in paths] == [
        "/etc/cti-bridge",
        f"/var/lib/cti-bridge/{name}",
        f"/run/cti-bridge/{name}",
    ]


def test_an_instance_reads_its_own_credential_files_outside_the_unit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beside the config an instance's secrets are the files its unit loads
    (NAME-ami-secret); inside the unit, $CREDENTIALS_DIRECTORY has them under the bare name."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    text = GOOD.replace('secret = "amisecret"', 'secret_file = "ami-secret"')
    path = write(tmp_path, text)
    (tmp_path / "ami-secret").write_text("the plain unit's\n")
    (tmp_path / "pbx1-ami-secret").write_text("pbx1's\n")
    assert load_config(path).ami.secret == Secret("the plain unit's")
    assert load_config(path, layout=Layout.of("pbx1")).ami.secret == Secret("pbx1's")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "ami-secret").write_text("from systemd\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert load_config(path, layout=Layout.of("pbx1")).ami.secret == Secret("from systemd")

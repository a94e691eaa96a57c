"""Config loading: every mistake is one line naming the file and the key; secrets stay hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from cti_bridge.config import ConfigError, Secret, load_config, redact_url, split_listen
from tests.support.cli import cli

ROOT = Path(__file__).resolve().parent.parent
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
region = "DE"

[agi]
listen = "127.0.0.1:4573"
"""


def write(tmp: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp / "cti-bridge.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_good_config_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.ami.username == "cti"
    assert cfg.ami.secret.get() == "amisecret"
    assert cfg.zammad.max_age == 12 * 3600
    assert cfg.pbx.trunk_endpoints == ("carrier", "voipgrid-siproute-*")
    assert cfg.pbx.report_internal is True
    assert cfg.users == {"101": "Alice Agent"}
    assert cfg.numbers.region == "DE"
    assert cfg.agi.host_port == ("127.0.0.1", 4573)
    assert cfg.zammad.display_url == "https://zammad.example.com/api/v1/cti/***"
    assert TOKEN not in repr(cfg) and "amisecret" not in repr(cfg)
    assert cfg.warnings == ()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("[ami]\n", "[ami]\nusernme = 'x'\n"), "[ami] usernme: unknown key"),
        (("port = 5038", 'port = "5038"'), "[ami] port: expected a port number"),
        (("port = 5038", "port = 70000"), "[ami] port: expected a port number"),
        (('username = "cti"\n', ""), "[ami] username: missing required key"),
        (('secret = "amisecret"\n', ""), "[ami] secret: missing required key"),
        (('max_age = "12h"', 'max_age = "soon"'), "[zammad] max_age: expected a duration"),
        (("report_internal = true", "report_internal = 1"), "[pbx] report_internal: expected true"),
        (
            ('["carrier", "voipgrid-siproute-*"]', '"carrier"'),
            "[pbx] trunk_endpoints: expected a list",
        ),
        (
            ('region = "DE"', 'region = "de"'),
            '[numbers] region: expected an uppercase ISO 3166 country code such as "DE"',
        ),
        (('region = "DE"', 'region = "XX"'), "[numbers] region: expected an uppercase ISO 3166"),
        (('region = "DE"', 'country_code = "49"'), "[numbers] country_code: unknown key"),
        (('"127.0.0.1:4573"', '"4573"'), "[agi] listen: expected host:port"),
        (('"127.0.0.1:4573"', '"0.0.0.0:4573"'), "[agi] allow: required when listen is not"),
        (("[numbers]", "[nmbers]"), "unknown section [nmbers]"),
        (('"101" = "Alice Agent"', '"101" = 101'), "[users] 101: expected a non-empty name"),
        (("url = ", "url = 5\nxurl = "), "[zammad] url: expected a string"),
    ],
)
def test_bad_config_names_file_and_key(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    old, new = change
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert message in text
    assert str(path) in text
    assert "\n" not in text
    assert TOKEN not in text and "amisecret" not in text


def test_bad_url_does_not_echo_the_token(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("https://", "ftp://"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "[zammad] url" in str(err.value) and TOKEN not in str(err.value)


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


def test_proxy_is_checked_and_its_password_kept_secret(tmp_path: Path) -> None:
    line = f'url = "https://zammad.example.com/api/v1/cti/{TOKEN}"'
    with_proxy = GOOD.replace(line, line + '\nproxy = "http://squid:pr0xy-pw@proxy.lan:3128"')
    cfg = load_config(write(tmp_path, with_proxy))
    assert cfg.zammad.proxy is not None
    assert cfg.zammad.proxy.get() == "http://squid:pr0xy-pw@proxy.lan:3128"
    assert "pr0xy-pw" not in repr(cfg)
    # A proxy password makes the file a secret's holder even with the other secrets in files.
    shared = write(tmp_path, with_proxy, 0o644)
    assert any("readable by others" in w for w in load_config(shared).warnings)
    bad = GOOD.replace(line, line + '\nproxy = "socks5://squid:pr0xy-pw@proxy.lan:3128"')
    with pytest.raises(ConfigError, match=r"\[zammad\] proxy: .*http://") as info:
        load_config(write(tmp_path, bad))
    assert "pr0xy-pw" not in str(info.value)

"""Load and validate the TOML configuration.

Every key is public contract (README, conf/cti-bridge.toml). Validation is strict on purpose:
an unknown key is far more often a typo that silently disables a feature than a harmless extra,
so it is an error naming the key and the file, and the CLI exits 2.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import phonenumbers

DEFAULT_CONFIG_PATH = "/etc/cti-bridge/cti-bridge.toml"
CONFIG_ENV = "CTI_BRIDGE_CONFIG"


class ConfigError(Exception):
    """A configuration problem, phrased as one line naming the file and the key."""


class Secret:
    """A string that never shows itself in repr/str, so it cannot leak into logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_TOKEN_PATH = re.compile(r"(/api/v1/cti/)[^/?#]*")


def redact_url(url: str) -> str:
    """Hide the Zammad token (the last path segment of the CTI endpoint) and any userinfo."""
    url = re.sub(r"//[^/@]*@", "//***@", url)
    if _TOKEN_PATH.search(url):
        return _TOKEN_PATH.sub(r"\1***", url)
    # Unknown layout: hide the last path segment, which is where a token would be.
    return re.sub(r"(https?://[^/]+/(?:[^/?#]+/)*)[^/?#]+", r"\1***", url)


@dataclass(frozen=True)
class AmiConfig:
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = ""
    secret: Secret = field(default_factory=lambda: Secret(""))
    ping_interval: float = 10.0
    ping_timeout: float = 5.0
    reconnect_interval: float = 2.0


@dataclass(frozen=True)
class ZammadConfig:
    url: Secret = field(default_factory=lambda: Secret(""))
    timeout: float = 5.0
    verify_tls: bool = True
    ca_bundle: str | None = None
    max_age: float = 24 * 3600.0
    concurrency: int = 8
    max_backoff: float = 30.0
    config_retry_interval: float = 60.0
    proxy: Secret | None = None  # http://[user:password@]host:port

    @property
    def display_url(self) -> str:
        return redact_url(self.url.get())

    @property
    def display_proxy(self) -> str | None:
        """``http://host:port`` of the proxy, without its credentials."""
        if self.proxy is None:
            return None
        parts = urllib.parse.urlsplit(self.proxy.get())
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


@dataclass(frozen=True)
class PbxConfig:
    trunk_endpoints: tuple[str, ...] = ()
    trunk_contexts: tuple[str, ...] = ("from-trunk", "from-pstn", "from-trunk-*", "from-pstn-*")
    internal_contexts: tuple[str, ...] = ("from-internal", "from-internal-*")
    report_internal: bool = False
    max_call_duration: float = 4 * 3600.0
    max_calls: int = 20000


@dataclass(frozen=True)
class NumbersConfig:
    region: str | None = None  # ISO 3166 alpha-2, e.g. "DE": the PBX's numbering plan


@dataclass(frozen=True)
class AgiConfig:
    listen: str = "127.0.0.1:4573"
    timeout: float = 2.0
    allow: tuple[str, ...] = ()

    @property
    def host_port(self) -> tuple[str, int]:
        return split_listen(self.listen)


@dataclass(frozen=True)
class SpoolConfig:
    path: str = "/var/lib/cti-bridge/spool.sqlite3"


@dataclass(frozen=True)
class StatusConfig:
    socket: str = "/run/cti-bridge/status.sock"


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = ""


@dataclass(frozen=True)
class Config:
    ami: AmiConfig = field(default_factory=AmiConfig)
    zammad: ZammadConfig = field(default_factory=ZammadConfig)
    pbx: PbxConfig = field(default_factory=PbxConfig)
    users: Mapping[str, str] = field(default_factory=dict)
    numbers: NumbersConfig = field(default_factory=NumbersConfig)
    agi: AgiConfig = field(default_factory=AgiConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    path: str = ""
    warnings: tuple[str, ...] = ()


def split_listen(value: str) -> tuple[str, int]:
    """Split "host:port" (IPv6 as "[::1]:port") into its parts."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^\[\]:]+):(\d{1,5})", value)
    if not m:
        raise ValueError(f"expected host:port, got {value!r}")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return host, port


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def _duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError('expected a duration (seconds or a string such as "24h")')
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.fullmatch(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError('expected a duration (seconds or a string such as "24h")')


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def _nonempty(value: Any) -> str:
    s = _string(value)
    if not s.strip():
        raise ValueError("must not be empty")
    return s


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError("expected a port number from 1 to 65535")
    return value


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("expected a whole number >= 1")
    return value


def _positive(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError("expected a number > 0")
    return float(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _string_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return tuple(value)


def _region(value: Any) -> str:
    s = _string(value)
    if s not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError('expected an uppercase ISO 3166 country code such as "DE"')
    return s


def _networks(value: Any) -> tuple[str, ...]:
    entries = _string_list(value)
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network") from None
    return entries


def _listen(value: Any) -> str:
    s = _string(value)
    if s:
        split_listen(s)
    return s


def _listen_required(value: Any) -> str:
    s = _nonempty(value)
    split_listen(s)
    return s


def _proxy(value: Any) -> Secret:
    s = _nonempty(value).strip()
    why = "expected http://[user:password@]host:port (or https://), without a path"
    try:  # the message never repeats the URL: it may hold the proxy's password
        url = httpx.URL(s)
    except httpx.InvalidURL:
        raise ValueError(why) from None
    bad_port = url.port is not None and not 0 < url.port < 65536
    if url.scheme not in ("http", "https") or not url.host or url.path not in ("", "/") or bad_port:
        raise ValueError(why)
    return Secret(s)


def _url(value: Any) -> str:
    s = _nonempty(value).strip()
    if not re.match(r"https?://[^/\s]+", s):
        # Do not echo the value: it holds the token.
        raise ValueError("expected an http(s):// URL")
    try:
        urllib.parse.urlsplit(s).port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError("the URL's port must be a number from 1 to 65535") from None
    return s


Check = Callable[[Any], Any]

# section -> key -> (validator, dataclass field name). Keys ending in _file are handled separately.
_SCHEMA: dict[str, dict[str, Check]] = {
    "ami": {
        "host": _nonempty,
        "port": _port,
        "username": _nonempty,
        "secret": _string,
        "secret_file": _nonempty,
        "ping_interval": _positive,
        "ping_timeout": _positive,
        "reconnect_interval": _positive,
    },
    "zammad": {
        "url": _url,
        "url_file": _nonempty,
        "timeout": _positive,
        "verify_tls": _boolean,
        "ca_bundle": _nonempty,
        "max_age": _duration,
        "concurrency": _positive_int,
        "max_backoff": _positive,
        "config_retry_interval": _positive,
        "proxy": _proxy,
    },
    "pbx": {
        "trunk_endpoints": _string_list,
        "trunk_contexts": _string_list,
        "internal_contexts": _string_list,
        "report_internal": _boolean,
        "max_call_duration": _duration,
        "max_calls": _positive_int,
    },
    "numbers": {"region": _region},
    "agi": {"listen": _listen, "timeout": _positive, "allow": _networks},
    "spool": {"path": _nonempty},
    "status": {"socket": _nonempty},
    "metrics": {"listen": _listen},
}
_REQUIRED = {"ami": ("username",)}
_SECRET_FILES = {("ami", "secret_file"): "secret", ("zammad", "url_file"): "url"}


def default_config_path() -> str:
    return os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def _read_secret_file(cfg_path: Path, section: str, key: str, value: str) -> str:
    p = Path(value)
    if not p.is_absolute():
        cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
        # systemd LoadCredential= puts the file in $CREDENTIALS_DIRECTORY under its bare name.
        if cred_dir and (Path(cred_dir) / p).exists():
            p = Path(cred_dir) / p
        else:
            p = cfg_path.parent / p
    try:
        content = p.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"{cfg_path}: [{section}] {key}: cannot read {p}: {exc.strerror or exc}"
        ) from None
    if not content:
        raise ConfigError(f"{cfg_path}: [{section}] {key}: {p} is empty")
    return content


def load_config(path: str | os.PathLike[str] | None = None, *, strict: bool = False) -> Config:
    """Read, validate and return the configuration; raise ConfigError with one clear line."""
    cfg_path = Path(path if path is not None else default_config_path())
    try:
        raw_bytes = cfg_path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{cfg_path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{cfg_path}: cannot read config file: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw_bytes.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{cfg_path}: config file is not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{cfg_path}: invalid TOML: {exc}") from None
    return parse_config(data, cfg_path, strict=strict, file_mode=_mode(cfg_path))


def _mode(p: Path) -> int | None:
    try:
        return stat.S_IMODE(p.stat().st_mode)
    except OSError:
        return None


def parse_config(
    data: Mapping[str, Any],
    cfg_path: Path | str = "<config>",
    *,
    strict: bool = False,
    file_mode: int | None = None,
) -> Config:
    cfg_path = Path(cfg_path)
    warnings: list[str] = []
    sections: dict[str, dict[str, Any]] = {}
    for section, body in data.items():
        if section == "users":
            continue
        if section not in _SCHEMA:
            raise ConfigError(f"{cfg_path}: unknown section [{section}]")
        if not isinstance(body, dict):
            raise ConfigError(f"{cfg_path}: [{section}] must be a table")
        checked: dict[str, Any] = {}
        for key, value in body.items():
            check = _SCHEMA[section].get(key)
            if check is None:
                raise ConfigError(f"{cfg_path}: [{section}] {key}: unknown key")
            try:
                checked[key] = check(value)
            except ValueError as exc:
                raise ConfigError(f"{cfg_path}: [{section}] {key}: {exc}") from None
        sections[section] = checked

    for section, keys in _REQUIRED.items():
        for key in keys:
            if key not in sections.get(section, {}):
                raise ConfigError(f"{cfg_path}: [{section}] {key}: missing required key")

    secrets_inline = False
    for (section, file_key), key in _SECRET_FILES.items():
        body = sections.setdefault(section, {})
        if key in body and file_key in body:
            raise ConfigError(f"{cfg_path}: [{section}] {key}: give either {key} or {file_key}")
        if file_key in body:
            value = _read_secret_file(cfg_path, section, file_key, body.pop(file_key))
            if key == "url":
                try:
                    value = _url(value)
                except ValueError as exc:
                    raise ConfigError(f"{cfg_path}: [{section}] {file_key}: {exc}") from None
            body[key] = Secret(value)
        elif key in body:
            body[key] = Secret(body[key])
            secrets_inline = True
        else:
            raise ConfigError(
                f"{cfg_path}: [{section}] {key}: missing required key (or {file_key})"
            )

    proxy = sections.get("zammad", {}).get("proxy")
    if proxy is not None and urllib.parse.urlsplit(proxy.get()).password:
        secrets_inline = True
    if secrets_inline and file_mode is not None and file_mode & 0o004:
        msg = (
            f"{cfg_path}: holds a secret and is readable by others (mode {file_mode:o}); "
            "chmod 640 it or use secret_file/url_file"
        )
        if strict:
            raise ConfigError(msg)
        warnings.append(msg)

    users_raw = data.get("users", {})
    if not isinstance(users_raw, dict):
        raise ConfigError(f'{cfg_path}: [users] must be a table of extension = "Name"')
    users: dict[str, str] = {}
    for key, value in users_raw.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{cfg_path}: [users] {key}: expected a non-empty name string")
        users[str(key)] = value

    agi = sections.get("agi", {})
    if agi.get("listen"):
        host, _ = split_listen(agi["listen"])
        if not _is_loopback(host) and not agi.get("allow"):
            raise ConfigError(
                f"{cfg_path}: [agi] allow: required when listen is not a loopback address"
            )

    return Config(
        ami=AmiConfig(**sections.get("ami", {})),
        zammad=ZammadConfig(**sections.get("zammad", {})),
        pbx=PbxConfig(**sections.get("pbx", {})),
        users=users,
        numbers=NumbersConfig(**sections.get("numbers", {})),
        agi=AgiConfig(**agi),
        spool=SpoolConfig(**sections.get("spool", {})),
        status=StatusConfig(**sections.get("status", {})),
        metrics=MetricsConfig(**sections.get("metrics", {})),
        path=str(cfg_path),
        warnings=tuple(warnings),
    )


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")

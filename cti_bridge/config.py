"""Load and validate the TOML configuration.

Every key is public contract (README, conf/cti-bridge.toml). The sections are pydantic v2
dataclasses: the same frozen classes the rest of the code reads, so the schema, the defaults
and the attributes cannot drift apart, and ``cti-bridge config schema`` prints the JSON Schema
an editor uses to check the file while it is being written.

Validation is strict on purpose. An unknown key is far more often a typo that silently disables
a feature than a harmless extra; a string where TOML has a number is a quoting mistake; and a
``nan`` or ``inf`` timeout would disable the very check it configures (a ``nan`` AGI timeout
lets every call through unchecked). Each is one line naming the file, the section and the key,
and the CLI exits 2. A value that holds a secret (the Zammad URL carries the token) is never
repeated in a message.

What only makes sense for a file lives in :func:`parse_config`, not in the classes: required
keys (code may build an ``AmiConfig()`` for its defaults), ``secret_file``/``url_file``, the
"readable by others" warning, and the pointers from retired keys to their replacements.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import stat
import tomllib
import typing
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Final, NoReturn

import phonenumbers
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    HttpUrl,
    Strict,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic.json_schema import JsonSchemaValue, SkipJsonSchema
from pydantic_core import CoreSchema, ErrorDetails, PydanticCustomError, core_schema

DEFAULT_CONFIG_PATH = "/etc/cti-bridge/cti-bridge.toml"
CONFIG_ENV = "CTI_BRIDGE_CONFIG"
INSTANCE_ENV = "CTI_BRIDGE_INSTANCE"
_INSTANCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class ConfigError(Exception):
    """A configuration problem, phrased as one line naming the file and the key."""


class Secret:
    """A string that never shows itself in repr/str, so it cannot leak into logs or tracebacks.

    As a pydantic type it takes a TOML string (or a ``Secret`` from code) and appears in the
    JSON Schema as a plain string.
    """

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

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from_str = core_schema.chain_schema(
            [core_schema.str_schema(strict=True), core_schema.no_info_plain_validator_function(cls)]
        )
        return core_schema.json_or_python_schema(
            json_schema=from_str,
            python_schema=core_schema.no_info_before_validator_function(_unwrap, from_str),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda _: "***"),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "writeOnly": True}


def _unwrap(value: object) -> object:
    """Code passes a Secret, TOML a str: both go through the same string check."""
    return value.get() if isinstance(value, Secret) else value


_TOKEN_PATH = re.compile(r"(/api/v1/cti/)[^/?#]*")


def redact_url(url: str) -> str:
    """Hide the Zammad token (the last path segment of the CTI endpoint) and any userinfo."""
    url = re.sub(r"//[^/@]*@", "//***@", url)
    if _TOKEN_PATH.search(url):
        return _TOKEN_PATH.sub(r"\1***", url)
    # Unknown layout: hide the last path segment, which is where a token would be.
    return re.sub(r"(https?://[^/]+/(?:[^/?#]+/)*)[^/?#]+", r"\1***", url)


def split_listen(value: str) -> tuple[str, int]:
    """Split "host:port" (IPv6 as "[::1]:port") into its parts; port 0 picks a free port."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^\[\]:\s]+):(\d{1,5})", value)
    if not m:
        raise ValueError(f'expected host:port (IPv6 as "[::1]:port"), got {value!r}')
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return host, port


# ---------------------------------------------------------------------------------- value types

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"


def _parse_duration(value: Any) -> Any:
    """``"24h"`` -> 86400.0; numbers (and anything else) go on to the strict float check."""
    if not isinstance(value, str):
        return value
    m = _DURATION.fullmatch(value)
    if not m:
        raise PydanticCustomError("duration_type", "expected a duration")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclasses.dataclass(frozen=True)
class Duration:
    """``Annotated[float, Duration(gt=0, le=600)]``: seconds as a finite number, or a string
    with a unit ("500ms", "30s", "5m", "4h", "1d"), within the bounds."""

    gt: float | None = None
    ge: float | None = None
    le: float | None = None

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        seconds = core_schema.float_schema(
            strict=True, allow_inf_nan=False, gt=self.gt, ge=self.ge, le=self.le
        )
        return core_schema.no_info_before_validator_function(_parse_duration, seconds)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        names = {"gt": "exclusiveMinimum", "ge": "minimum", "le": "maximum"}
        number = {"type": "number"} | {
            names[k]: v for k, v in dataclasses.asdict(self).items() if v is not None
        }
        return {"anyOf": [number, {"type": "string", "pattern": _DURATION_PATTERN}]}


@dataclasses.dataclass(frozen=True)
class Count:
    """``Annotated[int, Count(le=256)]``: a whole number from 1 to ``le``; a bool is no number."""

    le: int
    ge: int = 1

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.int_schema(strict=True, ge=self.ge, le=self.le)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


NonEmpty = Annotated[str, Strict(), AfterValidator(_not_blank), Field(min_length=1)]
Port = Annotated[int, Strict(), Field(ge=1, le=65535)]
Flag = Annotated[bool, Strict()]


def _host_port(value: str) -> str:
    if value:
        split_listen(value)
    return value


HostPort = Annotated[
    str,
    Strict(),
    AfterValidator(_host_port),
    WithJsonSchema({"type": "string", "pattern": r"^$|^(\[[0-9A-Fa-f:.]+\]|[^\[\]:\s]+):\d{1,5}$"}),
]


def _network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address or network (hostnames are not accepted)"
        ) from None
    return value


Networks = tuple[Annotated[str, Strict(), AfterValidator(_network)], ...]
Globs = tuple[NonEmpty, ...]


def _http_url(value: str, what: str) -> urllib.parse.SplitResult:
    """Check an http(s) URL with pydantic's parser; the message never repeats the URL."""
    try:
        url = TypeAdapter(HttpUrl).validate_python(value)
    except ValidationError:
        raise ValueError(f"expected {what}") from None
    if url.port == 0:
        raise ValueError(f"expected {what}; the port must be a number from 1 to 65535")
    return urllib.parse.urlsplit(value)


def _zammad_url(value: Secret) -> Secret:
    _http_url(value.get().strip(), "an http(s):// URL")
    return Secret(value.get().strip())


_PROXY_FORM = "http(s)://[user:password@]host[:port]"


def _proxy_url(value: Secret) -> Secret:
    parts = _http_url(value.get().strip(), f"a proxy URL {_PROXY_FORM}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"expected a proxy URL {_PROXY_FORM}, without a path")
    return Secret(value.get().strip())


ZammadUrl = Annotated[Secret, AfterValidator(_zammad_url)]
ProxyUrl = Annotated[Secret, AfterValidator(_proxy_url)]


def _region(value: str) -> str:
    region = value.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f'expected an ISO 3166 country code such as "DE", got {value!r}')
    return region


Region = Annotated[
    str,
    Strict(),
    AfterValidator(_region),
    WithJsonSchema({"type": "string", "enum": sorted(phonenumbers.SUPPORTED_REGIONS)}),
]


# ------------------------------------------------------------------------------------- sections


def _section(
    *, json_schema_extra: Callable[[dict[str, Any]], None] | None = None, title: str | None = None
) -> ConfigDict:
    """Every section: unknown keys refused, only finite numbers.

    hide_input_in_errors: a ValidationError raised by code building a section must not print
    the token or a password either. use_attribute_docstrings: the docstring under each key is
    its description in the JSON Schema, shown by an editor while typing.
    """
    return ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        hide_input_in_errors=True,
        json_schema_extra=json_schema_extra,
        title=title,
        use_attribute_docstrings=True,
    )


_SECTION = _section()


# Secret is immutable, so one shared empty default is safe.
_NO_SECRET: Final = Secret("")


def _secret_file_schema(key: str, file_key: str, what: str) -> Callable[[dict[str, Any]], None]:
    """Add the file-only ``*_file`` key to a section's JSON Schema: give one of key/file_key."""

    def extra(schema: dict[str, Any]) -> None:
        schema["properties"][file_key] = {
            "type": "string",
            "minLength": 1,
            "title": file_key.replace("_", " ").capitalize(),
            "description": f"File holding only {what}. A relative name is looked up in "
            "$CREDENTIALS_DIRECTORY (systemd LoadCredential=), then next to the config file.",
        }
        schema["properties"][key].pop("default", None)  # a placeholder, not a usable value
        schema["oneOf"] = [{"required": [key]}, {"required": [file_key]}]

    return extra


def _ami_extra(schema: dict[str, Any]) -> None:
    _secret_file_schema("secret", "secret_file", "the AMI secret")(schema)
    schema["required"] = ["username"]
    schema["properties"]["username"].pop("default", None)


@dataclass(frozen=True, config=_section(json_schema_extra=_ami_extra))
class AmiConfig:
    """Asterisk Manager Interface login and connection watchdog."""

    host: NonEmpty = "127.0.0.1"
    """AMI host name or address."""
    port: Port = 5038
    """AMI TCP port."""
    username: NonEmpty = ""
    """Required: the AMI user's [section] in manager.conf."""
    secret: Secret = _NO_SECRET
    """The AMI user's secret. Prefer secret_file (then this file may be 0644)."""
    ping_interval: Annotated[float, Duration(gt=0, le=3600)] = 10.0
    """Time between AMI Pings (a half-open connection is otherwise never noticed)."""
    ping_timeout: Annotated[float, Duration(gt=0, le=3600)] = 5.0
    """Time a Ping may go unanswered before the connection is re-opened."""
    reconnect_interval: Annotated[float, Duration(gt=0, le=3600)] = 2.0
    """Time between reconnect attempts."""


@dataclass(
    frozen=True,
    config=_section(json_schema_extra=_secret_file_schema("url", "url_file", "the Zammad URL")),
)
class ZammadConfig:
    """Zammad's Generic CTI endpoint and how events are delivered to it."""

    url: ZammadUrl = _NO_SECRET
    """The CTI endpoint with its token: https://zammad.example.com/api/v1/cti/<token>."""
    timeout: Annotated[float, Duration(gt=0, le=600)] = 5.0
    """Time per HTTP request to Zammad."""
    verify_tls: Flag = True
    """Verify Zammad's TLS certificate."""
    ca_bundle: NonEmpty | None = None
    """PEM file with the CA(s) of Zammad's certificate (default: system)."""
    max_age: Annotated[float, Duration(gt=0, le=365 * 86400)] = 24 * 3600.0
    """Events still unsent after this long become dead letters, e.g. "24h"."""
    concurrency: Annotated[int, Count(le=256)] = 8
    """Calls posted in parallel (the events of one call are always posted in order)."""
    max_backoff: Annotated[float, Duration(gt=0, le=86400)] = 30.0
    """Longest pause between retries while Zammad is unreachable or answers 5xx."""
    config_retry_interval: Annotated[float, Duration(gt=0, le=86400)] = 60.0
    """Time between probes while Zammad refuses for a configuration reason (401, 404, ...)."""
    proxy: ProxyUrl | None = None
    """HTTP proxy http(s)://[user:password@]host[:port]; a password here makes the file secret."""

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


@dataclass(frozen=True, config=_SECTION)
class PbxConfig:
    """How calls get their direction, and the bounds of the call model."""

    trunk_endpoints: Globs = ()
    """Trunk endpoint names (wildcards allowed) as in PJSIP/<endpoint>-0000001a."""
    trunk_contexts: Globs = ("from-trunk", "from-pstn", "from-trunk-*", "from-pstn-*")
    """Dialplan contexts (shell-style wildcards) in which trunk calls start."""
    internal_contexts: Globs = ("from-internal", "from-internal-*")
    """Dialplan contexts (shell-style wildcards) of the phones."""
    report_internal: Flag = False
    """Also post phone-to-phone calls (with direction "in")."""
    max_call_duration: Annotated[float, Duration(gt=0, le=7 * 86400)] = 4 * 3600.0
    """A call still open after this long is closed with a hangup, e.g. "4h"."""
    max_calls: Annotated[int, Count(le=10_000_000)] = 20000
    """Calls tracked at once; beyond it the least recently active call is closed."""


@dataclass(frozen=True, config=_SECTION)
class NumbersConfig:
    """How external numbers are written for Zammad."""

    region: Region | None = None
    """ISO 3166 country of the PBX, e.g. "DE": national numbers become international.

    Unset: only non-digits are removed."""


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


@dataclass(frozen=True, config=_SECTION)
class AgiConfig:
    """The FastAGI listener for the dialplan hook."""

    listen: HostPort = "127.0.0.1:4573"
    """FastAGI listener host:port; "" disables the hook."""
    timeout: Annotated[float, Duration(gt=0, le=60)] = 2.0
    """Longest wait for Zammad's answer before the call goes on unchanged."""
    allow: Networks = ()
    """Peer addresses or networks allowed; required when listen is not loopback."""

    @model_validator(mode="after")
    def _exposed_needs_allow(self) -> AgiConfig:
        if self.listen and not self.allow and not _is_loopback(self.host_port[0]):
            raise _key_error("allow", "required when listen is not a loopback address")
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        return split_listen(self.listen)


@dataclass(frozen=True, config=_SECTION)
class OutboxConfig:
    """The durable outbox."""

    path: NonEmpty = "/var/lib/cti-bridge/outbox.sqlite3"
    """SQLite file of the outbox."""


@dataclass(frozen=True, config=_SECTION)
class StatusConfig:
    """The socket ``cti-bridge status`` asks."""

    socket: NonEmpty = "/run/cti-bridge/status.sock"
    """Unix socket path."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where one unit's files are when the config does not say: the plain unit's, or those of
    the template unit's instance ``name`` (``cti-bridge@name.service``, which sets
    ``CTI_BRIDGE_INSTANCE=name``). One name selects the config file, the outbox and the status
    socket, inside the unit and for the commands run beside it
    (README.md#several-pbxs-one-instance-each).
    """

    instance: str | None = None

    @classmethod
    def of(cls, instance: str | None) -> Layout:
        """The layout of ``instance`` (None or "": the plain unit's); ConfigError if the name
        could leave its directories."""
        if not instance:
            return cls()
        if not _INSTANCE_NAME.fullmatch(instance):
            raise ConfigError(
                f"instance {instance!r}: expected letters, digits, '_', '.' or '-' "
                "(at most 64, not starting with '.', '_' or '-')"
            )
        return cls(instance)

    @property
    def config(self) -> str:
        if self.instance is None:
            return DEFAULT_CONFIG_PATH
        return f"/etc/cti-bridge/{self.instance}.toml"

    @property
    def defaults(self) -> dict[tuple[str, str], str]:
        """(section, key) -> value used when the file leaves the key out."""
        if self.instance is None:
            return {}
        return {
            ("outbox", "path"): f"/var/lib/cti-bridge/{self.instance}/outbox.sqlite3",
            ("status", "socket"): f"/run/cti-bridge/{self.instance}/status.sock",
        }

    def credential_source(self, name: str) -> str:
        """The file beside the config that the unit loads as credential ``name``: an
        instance's are prefixed with its name (``LoadCredential=ami-secret:.../NAME-ami-secret``),
        so commands run outside the unit read the same secrets."""
        return name if self.instance is None else f"{self.instance}-{name}"

    @property
    def status_socket(self) -> str:
        return self.defaults.get(("status", "socket"), StatusConfig().socket)


def _public_url(value: str) -> str:
    parts = _http_url(value.strip(), "an http(s):// URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("expected an http(s):// URL without user, query or fragment")
    return value.strip()


PublicUrl = Annotated[str, Strict(), AfterValidator(_public_url)]


@dataclass(frozen=True, config=_SECTION)
class WebConfig:
    """The daemon's HTTP listener: /metrics, /healthz and the pages for browsers."""

    listen: HostPort = ""
    """host:port, e.g. "127.0.0.1:9464"; "" is off. Beyond loopback, put TLS in front."""
    public_url: PublicUrl | None = None
    """The address browsers see, usually the https:// URL of a reverse proxy."""
    tls_cert: NonEmpty | None = None
    """PEM certificate (chain) to serve https directly; needs tls_key."""
    tls_key: NonEmpty | None = None
    """PEM private key of tls_cert."""

    @model_validator(mode="after")
    def _cert_and_key(self) -> WebConfig:
        if self.tls_cert and not self.tls_key:
            raise _key_error("tls_key", "required when tls_cert is set (give both or neither)")
        if self.tls_key and not self.tls_cert:
            raise _key_error("tls_cert", "required when tls_key is set (give both or neither)")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def exposed_without_tls(self) -> bool:
        """Plain HTTP beyond loopback: the dial keys of later pages would cross the network."""
        return bool(self.listen) and not self.tls and not _is_loopback(split_listen(self.listen)[0])


Users = Mapping[NonEmpty, NonEmpty]


@dataclass(frozen=True, config=_section(title="cti-bridge configuration"))
class Config:
    """cti-bridge configuration file (TOML). Unknown sections and keys are errors."""

    ami: AmiConfig = dataclasses.field(default_factory=AmiConfig)
    zammad: ZammadConfig = dataclasses.field(default_factory=ZammadConfig)
    pbx: PbxConfig = dataclasses.field(default_factory=PbxConfig)
    users: Users = dataclasses.field(default_factory=dict)
    """Extension = "Name" posted in user[]/user (else the phone's CallerIDName)."""
    numbers: NumbersConfig = dataclasses.field(default_factory=NumbersConfig)
    agi: AgiConfig = dataclasses.field(default_factory=AgiConfig)
    outbox: OutboxConfig = dataclasses.field(default_factory=OutboxConfig)
    status: StatusConfig = dataclasses.field(default_factory=StatusConfig)
    web: WebConfig = dataclasses.field(default_factory=WebConfig)
    # Set by the loader, not keys of the file.
    path: SkipJsonSchema[str] = ""
    warnings: SkipJsonSchema[tuple[str, ...]] = ()


_ADAPTER: Final = TypeAdapter(Config)
_SECTIONS: Final = tuple(
    f.name for f in dataclasses.fields(Config) if f.name not in ("path", "warnings")
)
_SECTION_CLASSES: Final[dict[str, Any]] = {
    name: cls
    for name, cls in typing.get_type_hints(Config).items()
    if dataclasses.is_dataclass(cls)
}
# (section, inline key, file key): the file key names a file holding only the value.
_SECRET_FILES: Final = (("ami", "secret", "secret_file"), ("zammad", "url", "url_file"))
_REQUIRED: Final = (("ami", "username"),)
_RETIRED: Final = {
    ("numbers", key): 'no longer supported; set region = "DE" (ISO 3166 country code) instead'
    for key in ("country_code", "national_prefix", "international_prefix")
}
_RETIRED_SECTIONS: Final = {
    "metrics": "moved: /metrics is served by the web listener; set [web] listen instead",
    "spool": "renamed to [outbox]; rename the section",
}


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of the file (``cti-bridge config schema``), for editors and checkers."""
    schema = _ADAPTER.json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def file_keys() -> dict[str, tuple[str, ...]]:
    """Section -> the keys the file may set there (``[users]`` takes any extension)."""
    defs = config_json_schema()["$defs"]
    return {name: tuple(defs[cls.__name__]["properties"]) for name, cls in _SECTION_CLASSES.items()}


# --------------------------------------------------------------------------------------- errors


def _key_error(key: str, message: str) -> PydanticCustomError:
    """A rule across keys, reported on ``key`` (pydantic would name only the section)."""
    return PydanticCustomError("config_key", "{key}: {reason}", {"key": key, "reason": message})


_NUMBER_ERRORS = frozenset(
    {
        "finite_number",
        "float_type",
        "float_parsing",
        "int_type",
        "int_parsing",
        "int_from_float",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "duration_type",
    }
)
_TYPE_MESSAGES = {
    "missing": "missing required key",
    "unexpected_keyword_argument": "unknown key",
    "extra_forbidden": "unknown key",
    "string_type": "expected a string",
    "string_too_short": "must not be empty",
    "bool_type": "expected true or false",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
    "dict_type": "expected a table",
    "mapping_type": "expected a table",
    "dataclass_type": "expected a table",
}


_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


def _expected_number(section: str, key: str) -> str:
    """ "a finite number > 0 and <= 600" from the field's own constraints."""
    info = _SECTION_CLASSES[section].__pydantic_fields__[key]
    bounds = []
    duration = False
    for m in info.metadata:
        duration = duration or isinstance(m, Duration)
        for attr, op in _BOUNDS:
            value = getattr(m, attr, None)
            if isinstance(value, int | float):
                bounds.append(f"{op} {int(value) if value == int(value) else value}")
    text = "a whole number" if info.annotation is int else "a finite number"
    text = " ".join([text, " and ".join(bounds)]).strip()
    if duration:
        text += ' (seconds, or a string such as "500ms", "30s", "5m", "24h")'
    return text


def _describe(err: ErrorDetails) -> tuple[str, str]:
    """(where, what) of pydantic's error, never with the input value."""
    loc = [str(p) for p in err["loc"]]
    ctx = err.get("ctx") or {}
    if "key" in ctx:
        loc.append(str(ctx["key"]))
    kind = err["type"]
    if len(loc) == 1:
        return f"[{loc[0]}]", _TYPE_MESSAGES.get(kind, err["msg"])
    section, key = loc[0], loc[1]
    if section == "users":
        return f"[users] {key}", 'expected a non-empty name string ("201" = "Alice Example")'
    if kind in _NUMBER_ERRORS:
        return f"[{section}] {key}", "must be " + _expected_number(section, key)
    if kind == "config_key":
        return f"[{section}] {key}", str(ctx["reason"])
    if kind == "value_error":
        return f"[{section}] {key}", str(ctx.get("error", err["msg"]))
    return f"[{section}] {key}", _TYPE_MESSAGES.get(kind, err["msg"])


# ------------------------------------------------------------------------------------- loading


def default_config_path(layout: Layout | None = None) -> str:
    """$CTI_BRIDGE_CONFIG, else the layout's config file (the plain unit's by default)."""
    return os.environ.get(CONFIG_ENV) or (layout or Layout()).config


def _read_secret_file(cfg_path: Path, section: str, key: str, value: object, layout: Layout) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{cfg_path}: [{section}] {key}: expected a file name")
    p = Path(value)
    if not p.is_absolute():
        cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
        # systemd LoadCredential= puts the file in $CREDENTIALS_DIRECTORY under its bare name.
        if cred_dir and (Path(cred_dir) / p).exists():
            p = Path(cred_dir) / p
        else:
            p = cfg_path.parent / layout.credential_source(value)
    try:
        content = p.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"{cfg_path}: [{section}] {key}: cannot read {p}: {exc.strerror or exc}"
        ) from None
    if not content:
        raise ConfigError(f"{cfg_path}: [{section}] {key}: {p} is empty")
    return content


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    strict: bool = False,
    layout: Layout | None = None,
) -> Config:
    """Read, validate and return the configuration; raise ConfigError with one clear line.
    ``layout`` supplies the file's default path and the paths the file leaves out."""
    cfg_path = Path(path if path is not None else default_config_path(layout))
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
    return parse_config(data, cfg_path, strict=strict, file_mode=_mode(cfg_path), layout=layout)


def _mode(p: Path) -> int | None:
    try:
        return stat.S_IMODE(p.stat().st_mode)
    except OSError:
        return None


class _FileLayer:
    """What only a config *file* has: sections as tables, ``*_file`` secrets, required keys,
    retired keys, and whether a secret is written inline (for the "readable by others" check).
    """

    def __init__(self, data: Mapping[str, Any], cfg_path: Path, layout: Layout) -> None:
        self.cfg_path = cfg_path
        self.tables: dict[str, dict[str, Any]] = {}
        self.from_file: dict[tuple[str, str], str] = {}  # (section, key) -> its *_file key
        self.inline = False
        for section, body in data.items():
            if section in _RETIRED_SECTIONS:
                keys = list(body) if isinstance(body, dict) else []
                where = f"[{section}] {keys[0]}" if keys else f"[{section}]"
                self.fail(f"{where}: {_RETIRED_SECTIONS[section]}")
            if section not in _SECTIONS:
                self.fail(f"unknown section [{section}]")
            if not isinstance(body, dict):
                shape = ' of extension = "Name"' if section == "users" else ""
                self.fail(f"[{section}] must be a table{shape}")
            for key in body:
                if (section, key) in _RETIRED:
                    self.fail(f"[{section}] {key}: {_RETIRED[section, key]}")
            self.tables[section] = dict(body)
        for (section, key), value in layout.defaults.items():
            self.tables.setdefault(section, {}).setdefault(key, value)
        for section, key, file_key in _SECRET_FILES:
            body = self.tables.get(section, {})
            if file_key not in body:
                self.inline = self.inline or key in body
            elif key in body:
                self.fail(f"[{section}] {key}: give either {key} or {file_key}")
            else:
                value = body.pop(file_key)
                body[key] = _read_secret_file(cfg_path, section, file_key, value, layout)
                self.from_file[section, key] = file_key

    def fail(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.cfg_path}: {message}")

    def validate(self) -> Config:
        try:
            cfg = _ADAPTER.validate_python(self.tables)
        except ValidationError as exc:
            err = exc.errors(include_url=False, include_input=False)[0]
            where, what = _describe(err)
            section, key = (str(p) for p in (*err["loc"], "")[:2])
            if (section, key) in self.from_file:  # the value came from a file: name that key
                where = f"[{section}] {self.from_file[section, key]}"
            self.fail(f"{where}: {what}")
        for section, key in _REQUIRED:
            if key not in self.tables.get(section, {}):
                self.fail(f"[{section}] {key}: missing required key")
        for section, key, file_key in _SECRET_FILES:
            if key not in self.tables.get(section, {}):
                self.fail(f"[{section}] {key}: missing required key (or {file_key})")
        proxy = cfg.zammad.proxy
        if proxy is not None and urllib.parse.urlsplit(proxy.get()).password:
            self.inline = True
        return cfg


def parse_config(
    data: Mapping[str, Any],
    cfg_path: Path | str = "<config>",
    *,
    strict: bool = False,
    file_mode: int | None = None,
    layout: Layout | None = None,
) -> Config:
    """Validate parsed TOML; ``file_mode`` is the file's permission bits, for the warning."""
    layer = _FileLayer(data, Path(cfg_path), layout or Layout())
    cfg = layer.validate()
    warnings: list[str] = []
    if layer.inline and file_mode is not None and file_mode & 0o004:
        msg = (
            f"{cfg_path}: holds a secret and is readable by others (mode {file_mode:o}); "
            "chmod 640 it or use secret_file/url_file"
        )
        if strict:
            raise ConfigError(msg)
        warnings.append(msg)
    if cfg.web.exposed_without_tls:
        warnings.append(
            f"{cfg_path}: [web] listen: {cfg.web.listen} is reachable beyond loopback over "
            "plain HTTP; set tls_cert/tls_key or listen on loopback behind a TLS reverse proxy"
        )
    return dataclasses.replace(cfg, path=str(cfg_path), warnings=tuple(warnings))

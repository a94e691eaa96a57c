"""The FastAGI dialogue as data: the ``agi_*`` environment in, commands out, replies parsed.

Pure functions, no sockets: the server feeds them lines, and property tests feed them anything.
Every parser either returns a value or raises :class:`AgiProtocolError`, so a hostile or broken
peer costs one dropped connection and never a half-applied decision. panoramisk's own FastAGI
server is not used because it takes an inline ``HANGUP`` line for the reply to the next command
(docs/asterisk-ami.md#1310-fastagi-mistakes-a-hangup-line-for-a-reply).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: One ``agi_*`` line; Asterisk's longest values (caller ID names, arguments) fit easily.
MAX_LINE = 4096
#: About 25 standard variables plus the ``agi_arg_N``: more is not Asterisk talking.
MAX_ENV_LINES = 128
MAX_ENV_BYTES = 32 * 1024

_ENV_KEY = re.compile(r"agi_[a-z0-9_]{1,40}")
_REPLY_OTHER = re.compile(r"([1-5][0-9]{2})(?:$|[ -])")
_REPLY_200 = re.compile(r"200 result=(-?\d+)(?: \((.*)\))?(?: endpos=\d+)?")


class AgiProtocolError(Exception):
    """The peer broke the FastAGI dialogue (bad env or reply, stall): drop the connection."""


@dataclass(frozen=True)
class AgiRequest:
    """One ``AGI(agi://host:port/script[,TO[,QUEUE]])`` call, as the decision needs it."""

    network_script: str
    channel: str
    uniqueid: str
    linkedid: str
    callerid: str
    calleridname: str
    callingpres: str
    dnid: str
    context: str
    extension: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def to(self) -> str:
        """Where the call goes: argument 1, else the extension, else the dialled number.

        Macros and FreePBX hooks run in extension ``s``, where only ``agi_dnid`` holds digits.
        """
        if self.args and self.args[0]:
            return self.args[0]
        ext = self.extension
        if ext and ext.lstrip("+").isdigit():
            return ext
        if self.dnid and self.dnid != "unknown":
            return self.dnid
        return ext

    @property
    def queue(self) -> str | None:
        """Argument 2: a queue name for Zammad's caller-log filter.

        Zammad filters the call list by ``queue`` (docs/zammad-cti.md#3-fields-per-event).
        """
        return self.args[1] if len(self.args) > 1 and self.args[1] else None


@dataclass(frozen=True)
class AgiReply:
    code: int
    result: int | None = None
    data: str | None = None

    @property
    def ok(self) -> bool:
        return self.code == 200


def parse_env(lines: list[str]) -> dict[str, str]:
    """Parse ``agi_key: value`` lines; anything else makes the whole environment malformed."""
    env: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if not sep or not _ENV_KEY.fullmatch(key):
            raise AgiProtocolError(f"malformed environment line {short(line)}")
        env[key] = value[1:] if value.startswith(" ") else value
    if "agi_network_script" not in env and "agi_request" not in env:
        raise AgiProtocolError("environment without agi_network_script/agi_request")
    return env


def env_args(env: dict[str, str]) -> list[str]:
    """``agi_arg_1..N`` in order; a gap ends the list (Asterisk numbers them contiguously)."""
    args: list[str] = []
    while f"agi_arg_{len(args) + 1}" in env:
        args.append(env[f"agi_arg_{len(args) + 1}"])
    return args


def build_request(env: dict[str, str], linkedid: str | None) -> AgiRequest:
    """The request for one environment; ``linkedid`` is asked over AGI (``agi_*`` lacks it).

    Without it the call falls back to ``agi_uniqueid``, the key the AMI tracker uses for a
    channel that starts a call (docs/asterisk-ami.md#1-channels-and-calls).
    """
    script = env.get("agi_network_script")
    if script is None:  # derive from agi_request = agi://host:port/script
        script = env.get("agi_request", "").split("://", 1)[-1].partition("/")[2]
    uniqueid = env.get("agi_uniqueid", "")
    return AgiRequest(
        network_script=script.strip("/"),
        channel=env.get("agi_channel", ""),
        uniqueid=uniqueid,
        linkedid=linkedid or uniqueid,
        callerid=env.get("agi_callerid", ""),
        calleridname=env.get("agi_calleridname", ""),
        callingpres=env.get("agi_callingpres", ""),
        dnid=env.get("agi_dnid", ""),
        context=env.get("agi_context", ""),
        extension=env.get("agi_extension", ""),
        args=env_args(env),
        env=env,
    )


def parse_reply(line: str) -> AgiReply:
    """``200 result=N (data)`` or a bare status code; anything else is not res_agi talking."""
    m = _REPLY_200.fullmatch(line)
    if m:
        return AgiReply(200, int(m.group(1)), m.group(2))
    m = _REPLY_OTHER.match(line)
    if m:
        return AgiReply(int(m.group(1)))
    raise AgiProtocolError(f"unexpected reply {short(line)}")


def quote_arg(value: str) -> str:
    """Quote one AGI command argument; CR, LF and NUL can never be sent (they end a command)."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError("AGI argument contains a line break")
    if value and not any(c in value for c in ' \t"\\'):
        return value
    # res_agi's parse_args: double quotes group, backslash escapes the next character.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def agi_command(verb: str, *args: str) -> str:
    """``verb`` is one of our literals (``GET VARIABLE``, ``EXEC``); only ``args`` carry data."""
    return " ".join([verb, *(quote_arg(a) for a in args)])


def short(value: object, limit: int = 60) -> str:
    """A peer's value for a log line: quoted, and cut so a hostile peer cannot flood the log."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."

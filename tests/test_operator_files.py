"""The files operators copy: systemd unit, example config, AMI user and dialplan hooks.

They are checked against the code they must agree with (config.py defaults and loader) and,
where the tool is installed, against systemd's own verifier, because a unit or config that
drifts from the code only fails on a production host.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import fields, replace
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from cti_bridge import config as config_mod
from cti_bridge.agi.decide import AgiDecision
from cti_bridge.agi.server import AgiServer
from cti_bridge.agi.wire import AgiRequest
from cti_bridge.ami.wanted import WANTED_EVENTS
from cti_bridge.config import (
    DEFAULT_CONFIG_PATH,
    AgiConfig,
    AmiConfig,
    Config,
    PbxConfig,
    Secret,
    ZammadConfig,
    load_config,
)

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "cti-bridge.service"
TEMPLATE = ROOT / "systemd" / "cti-bridge@.service"
INSTANCE = "pbx1"
EXAMPLE = ROOT / "conf" / "cti-bridge.toml"
MANAGER = ROOT / "conf" / "asterisk" / "manager_cti.conf"
DIALPLAN = ROOT / "conf" / "asterisk" / "extensions_cti.conf"

README = ROOT / "README.md"

MAX_EXPOSURE = 2.0


# ---------------------------------------------------------------------------------------------
# systemd unit


def _unit_entries(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; systemd allows repeated keys, so no dict."""
    entries: list[tuple[str, str, str]] = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        entries.append((section, key.strip(), value.strip()))
    return entries


def _unit_values(key: str, unit: Path = UNIT) -> list[str]:
    return [v for s, k, v in _unit_entries(unit.read_text()) if s == "Service" and k == key]


def _unit_value(key: str, unit: Path = UNIT) -> str:
    values = _unit_values(key, unit)
    assert len(values) == 1, f"{key}= expected once in {unit.name}, found {values}"
    return values[0]


def _instance_value(key: str) -> str:
    """A [Service] value of the template as instance INSTANCE has it (%i expanded)."""
    return _unit_value(key, TEMPLATE).replace("%i", INSTANCE)


# The [Service] keys where an instance differs from the plain unit: its own paths and user.
PER_INSTANCE_KEYS = frozenset(
    {"ExecStart", "User", "StateDirectory", "RuntimeDirectory", "LoadCredential", "Environment"}
)


def test_template_repeats_the_plain_units_settings() -> None:
    """systemd has no include for [Service]: the template repeats the plain unit's settings
    (hardening included), and this keeps the two in step."""

    def shared(unit: Path) -> list[tuple[str, str, str]]:
        return [e for e in _unit_entries(unit.read_text()) if e[1] not in PER_INSTANCE_KEYS]

    template, plain = shared(TEMPLATE), shared(UNIT)
    assert [e for e in template if e[0] != "Unit"] == [e for e in plain if e[0] != "Unit"]
    assert _unit_values("Environment", TEMPLATE) == [
        f"{config_mod.INSTANCE_ENV}=%i",
        *_unit_values("Environment"),
    ]


def test_template_instance_agrees_with_its_layout() -> None:
    """An instance's config, outbox and socket are where ``Layout.of(name)`` looks for them,
    inside the directories systemd creates for that instance."""
    layout = config_mod.Layout.of(INSTANCE)
    exec_start = _instance_value("ExecStart").split()
    assert exec_start[:2] == _unit_value("ExecStart").split()[:2]
    assert exec_start[exec_start.index("--config") + 1] == layout.config
    defaults = {key: PurePosixPath(v) for (_, key), v in layout.defaults.items()}
    assert defaults["path"].parent == PurePosixPath("/var/lib") / _instance_value("StateDirectory")
    assert defaults["path"].name == "outbox.sqlite3"
    assert defaults["socket"].parent == PurePosixPath("/run") / _instance_value("RuntimeDirectory")
    assert _instance_value("User") != _unit_value("User"), "each instance has a user of its own"
    # The same credential names as the plain unit, from files named after the instance.
    creds = dict(v.split(":", 1) for v in _unit_values("LoadCredential", TEMPLATE))
    assert creds.keys() == dict(v.split(":", 1) for v in _unit_values("LoadCredential")).keys()
    for name, source in creds.items():
        assert source.replace("%i", INSTANCE) == f"/etc/cti-bridge/{INSTANCE}-{name}"


def test_unit_agrees_with_config_defaults() -> None:
    assert _unit_value("Type") == "notify"
    assert _unit_value("NotifyAccess") == "main"
    assert _unit_value("WatchdogSec")
    assert _unit_value("DynamicUser") == "yes"
    assert _unit_value("CapabilityBoundingSet") == ""

    exec_start = _unit_value("ExecStart").split()
    assert PurePosixPath(exec_start[0]).name == "cti-bridge"
    assert exec_start[1] == "run"
    assert exec_start[exec_start.index("--config") + 1] == DEFAULT_CONFIG_PATH
    assert f"/etc/{_unit_value('ConfigurationDirectory')}" == str(
        PurePosixPath(DEFAULT_CONFIG_PATH).parent
    )

    # The default outbox and status socket must lie in the directories systemd creates,
    # as nothing else is writable under ProtectSystem=strict.
    outbox = PurePosixPath(config_mod.OutboxConfig().path)
    assert outbox.parent == PurePosixPath("/var/lib") / _unit_value("StateDirectory")
    socket = PurePosixPath(config_mod.StatusConfig().socket)
    assert socket.parent == PurePosixPath("/run") / _unit_value("RuntimeDirectory")


def test_unit_credentials_match_example_config() -> None:
    creds = dict(v.split(":", 1) for v in _unit_values("LoadCredential"))
    text = EXAMPLE.read_text()
    for key in ("secret_file", "url_file"):
        m = re.search(rf'^{key}\s*=\s*"([^"]+)"', text, re.MULTILINE)
        assert m, f"{key} not set in {EXAMPLE.name}"
        name = m.group(1)
        assert name in creds, f"{key} = {name!r} has no LoadCredential={name}:..."
        # The on-disk source sits next to the config, so a root shell finds it too.
        assert PurePosixPath(creds[name]) == PurePosixPath(DEFAULT_CONFIG_PATH).parent / name


@pytest.fixture(params=["plain", "template"])
def verifiable_unit(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """The unit with ExecStart pointing at an existing binary (verify checks that it exists);
    for the template, the path of its instance INSTANCE (systemd finds the template beside)."""
    source = UNIT if request.param == "plain" else TEMPLATE
    exe = Path(sys.executable).parent / "cti-bridge"
    target = str(exe) if exe.exists() else "/bin/true"
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={target}", source.read_text(), flags=re.MULTILINE)
    (tmp_path / source.name).write_text(text)
    return tmp_path / source.name.replace("@.", f"@{INSTANCE}.")


def _systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed (Debian/Ubuntu package: systemd)")
    return exe


def test_unit_passes_systemd_analyze_verify(verifiable_unit: Path) -> None:
    exe = _systemd_analyze()
    proc = subprocess.run(
        [exe, "verify", str(verifiable_unit)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Unknown or misspelt directives are only warnings; treat them as failures.
    assert "Unknown key" not in proc.stderr, proc.stderr
    assert "Unknown lvalue" not in proc.stderr, proc.stderr


def test_unit_exposure_score(verifiable_unit: Path) -> None:
    exe = _systemd_analyze()
    helptext = subprocess.run([exe, "security", "--help"], capture_output=True, text=True).stdout
    if "--offline" not in helptext:
        pytest.skip("systemd-analyze security --offline needs systemd 250 or later")
    proc = subprocess.run(
        [exe, "security", "--offline=yes", "--no-pager", str(verifiable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, proc.stdout


PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


def _memory_deny_write_execute() -> None:
    """Child side of Popen: the kernel's own W^X policy, what MemoryDenyWriteExecute= enforces."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


def _mdwe_supported() -> bool:
    probe = "import mmap; mmap.mmap(-1, 4096, prot=7)"  # PROT_READ|WRITE|EXEC must be refused
    try:
        proc = subprocess.run(
            [sys.executable, "-c", probe],
            preexec_fn=_memory_deny_write_execute,
            capture_output=True,
            timeout=30,
        )
    except subprocess.SubprocessError:
        return False
    return proc.returncode != 0 and b"Permission denied" in proc.stderr


def test_daemon_runs_under_memory_deny_write_execute(tmp_path: Path) -> None:
    """MemoryDenyWriteExecute=yes must not break the daemon: start it under the same policy.

    The kernel's PR_SET_MDWE (Linux 6.3+) refuses writable+executable mappings like systemd's
    seccomp filter does. The daemon starts its outbox, AGI, status and web servers and
    its HTTP client (TLS context), answers ``status`` and /metrics, then stops on SIGTERM.
    """
    if not _mdwe_supported():
        pytest.skip("kernel without prctl(PR_SET_MDWE) (Linux 6.3+ needed)")
    from tests.e2e.lab import PortPicker

    ports = PortPicker()
    agi_port, metrics_port, ami_port, zammad_port = (ports.port() for _ in range(4))
    (tmp_path / "ami-secret").write_text("x\n")
    (tmp_path / "zammad-url").write_text(f"https://127.0.0.1:{zammad_port}/api/v1/cti/t\n")
    cfg = tmp_path / "cti-bridge.toml"
    cfg.write_text(
        f'''[ami]
port = {ami_port}
username = "cti-bridge"
secret_file = "ami-secret"
[zammad]
url_file = "zammad-url"
[agi]
listen = "127.0.0.1:{agi_port}"
[outbox]
path = "{tmp_path}/outbox.sqlite3"
[status]
socket = "{tmp_path}/status.sock"
[web]
listen = "127.0.0.1:{metrics_port}"
'''
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env.pop("CREDENTIALS_DIRECTORY", None)
    cli = [sys.executable, "-m", "cti_bridge"]
    daemon = subprocess.Popen(
        [*cli, "run", "--config", str(cfg)],
        preexec_fn=_memory_deny_write_execute,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        status = None
        for _ in range(150):  # bounded: 150 polls of at most ~0.1 s plus the command
            if daemon.poll() is not None:
                break
            status = subprocess.run(
                [*cli, "status", "--json", "--config", str(cfg)],
                capture_output=True,
                text=True,
                timeout=30,
                env=env,
            )
            if status.returncode == 0:
                break
            time.sleep(0.1)
        assert daemon.poll() is None, daemon.communicate(timeout=10)[1]
        assert status is not None and status.returncode == 0, status
        import json
        import urllib.request

        assert "agi" in json.loads(status.stdout)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            assert b"cti_bridge_outbox_depth" in r.read()
    finally:
        daemon.terminate()
        _, stderr = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, stderr
    assert "Permission denied" not in stderr, stderr


# ---------------------------------------------------------------------------------------------
# Example configuration


@pytest.fixture
def credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A $CREDENTIALS_DIRECTORY as systemd's LoadCredential= would create it."""
    cred = tmp_path / "credentials"
    cred.mkdir()
    (cred / "ami-secret").write_text("ami-s3cret\n")
    (cred / "zammad-url").write_text("https://zammad.example/api/v1/cti/T0KEN\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(cred))
    return cred


def test_example_config_loads_with_credentials(credentials: Path) -> None:
    cfg = load_config(EXAMPLE, strict=True)
    assert cfg.warnings == ()
    assert cfg.ami.username == "cti-bridge"
    assert cfg.ami.secret.get() == "ami-s3cret"
    assert cfg.zammad.url.get() == "https://zammad.example/api/v1/cti/T0KEN"
    assert "T0KEN" not in cfg.zammad.display_url


def test_example_config_shows_the_defaults(credentials: Path) -> None:
    """The example claims "every key shown with its default": hold it to that."""
    cfg = load_config(EXAMPLE)
    expected = Config(
        ami=replace(AmiConfig(), username=cfg.ami.username, secret=cfg.ami.secret),
        zammad=replace(ZammadConfig(), url=cfg.zammad.url),
    )
    for f in fields(Config):
        if f.name in ("path", "warnings"):
            continue
        assert getattr(cfg, f.name) == getattr(expected, f.name), f"[{f.name}] differs"


def test_example_config_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    for section, keys in config_mod.file_keys().items():
        assert re.search(rf"^\[{section}\]$", text, re.MULTILINE), f"[{section}] missing"
        for key in keys:
            # Set, or shown commented out ("# key = ...").
            assert re.search(rf"^#? ?{key} = ", text, re.MULTILINE), f"[{section}] {key} missing"
    assert re.search(r"^\[users\]$", text, re.MULTILINE)


def test_readme_config_reference_lists_every_key() -> None:
    text = README.read_text()
    reference = text[text.index("## Configuration reference") :]
    reference = reference[: reference.index("\n## ")]
    for section, keys in config_mod.file_keys().items():
        assert f"**[{section}]**" in reference, f"[{section}] missing from the README"
        for key in keys:
            assert f"`{key}`" in reference, f"[{section}] {key} missing from the README"


def _readme_commands() -> list[tuple[list[str], list[str]]]:
    """(subcommand words, documented --options) from the README's command table."""
    rows = []
    for line in README.read_text().splitlines():
        m = re.match(r"\| `cti-bridge ([^`]*)`", line)
        if not m:
            continue
        words = m.group(1).split()
        sub = [w for w in words if re.fullmatch(r"[a-z]+", w)]
        options = re.findall(r"--[a-z-]+", m.group(1))
        rows.append((sub, options))
    return rows


def test_readme_commands_exist_with_their_options() -> None:
    from typer.testing import CliRunner

    from cti_bridge.cli.app import app

    rows = _readme_commands()
    assert {" ".join(sub) for sub, _ in rows} >= {
        "run", "status", "check", "send", "replay", "outbox list", "outbox retry", "outbox purge"
    }  # fmt: skip
    runner = CliRunner()
    for sub, options in rows:
        result = runner.invoke(app, [*sub, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
        assert result.exit_code == 0, (sub, result.output)
        for option in options:
            assert option in result.output, f"cti-bridge {' '.join(sub)}: no {option}"
    # The unit starts the daemon exactly like this.
    exec_start = _unit_value("ExecStart").split()[1:]
    assert exec_start[:2] == ["run", "--config"]


def test_example_config_finds_secrets_next_to_it_without_systemd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    cfg_path = tmp_path / "cti-bridge.toml"
    shutil.copy(EXAMPLE, cfg_path)
    (tmp_path / "ami-secret").write_text("beside\n")
    (tmp_path / "zammad-url").write_text("https://z.example/api/v1/cti/abc\n")
    cfg = load_config(cfg_path)
    assert cfg.ami.secret == Secret("beside")
    assert cfg.zammad.url.get().endswith("/abc")


def test_example_config_fails_clearly_without_secret_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    cfg_path = tmp_path / "cti-bridge.toml"
    shutil.copy(EXAMPLE, cfg_path)
    with pytest.raises(config_mod.ConfigError, match=r"\[ami\] secret_file: cannot read"):
        load_config(cfg_path)


# ---------------------------------------------------------------------------------------------
# Asterisk: manager user


def _asterisk_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """Asterisk .conf: [section], key = value, ';' comments (no escapes used in our files)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"\[([^\]]+)\]", line)
        if m:
            current = sections.setdefault(m.group(1), [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"unexpected line {raw!r}"
        current.append((key.strip(), value.lstrip(">").strip()))
    return sections


# Events the bridge relies on; a filter must never drop them. List items of an action
# (CoreShowChannel...) are not subject to filters and not in the list.
NEEDED_EVENTS = sorted(WANTED_EVENTS)
# AMI events of Asterisk 16 the bridge does not read, among them the ones whose names start
# with a wanted one (a legacy filter regex matches a prefix).
UNREAD_EVENTS = ("Newexten", "VarSet", "HangupHandlerRun", "HangupHandlerPush",
                 "HangupHandlerPop", "SoftHangupRequest", "BridgeCreate", "BlindTransfer",
                 "AttendedTransfer", "Pickup", "LocalOptimizationBegin", "LocalOptimizationEnd",
                 "Rename", "QueueCallerLeave", "AgentComplete", "AgentRingNoAnswer", "UserEvent",
                 "Shutdown", "DeviceStateChange", "ExtensionStatus", "PresenceStateChange",
                 "MusicOnHoldStart", "MusicOnHoldStop", "Hold", "Unhold", "RTCPSent",
                 "RTCPReceived", "ChannelTalkingStart", "ChannelTalkingStop", "DTMFBegin",
                 "DTMFEnd", "Cdr", "CEL", "NewAccountCode", "MixMonitorStart", "AgentLogin",
                 "QueueMemberStatus")  # fmt: skip
NOISE_EVENTS = ("Newexten", "VarSet")
AMI_CLASSES = {"system", "call", "log", "verbose", "agent", "user", "config", "command", "dtmf",
               "reporting", "cdr", "dialplan", "originate", "agi", "cc", "aoc", "test",
               "security", "message"}  # fmt: skip


def _manager_user() -> dict[str, list[str]]:
    sections = _asterisk_sections(MANAGER.read_text())
    assert list(sections) == ["cti-bridge"], "one AMI user, named like [ami] username"
    user: dict[str, list[str]] = {}
    for key, value in sections["cti-bridge"]:
        user.setdefault(key, []).append(value)
    return user


def _classes(value: str) -> set[str]:
    return {c.strip() for c in value.split(",")}


def test_manager_user_is_least_privilege() -> None:
    user = _manager_user()
    (read,) = user["read"]
    (write,) = user["write"]
    for perm in (read, write):
        assert "all" not in _classes(perm)
        assert _classes(perm) <= AMI_CLASSES, perm
    assert _classes(read) >= {"call", "agent", "system"}
    assert not _classes(read) & {"dialplan", "config", "command", "originate", "cdr"}
    assert not _classes(write) & {"system", "config", "command", "originate", "agi"}
    assert user["deny"] == ["0.0.0.0/0.0.0.0"]
    assert "127.0.0.1/255.255.255.255" in user["permit"]
    assert int(user["writetimeout"][0]) >= 1000


def _example_username() -> str:
    m = re.search(r'^username\s*=\s*"([^"]+)"', EXAMPLE.read_text(), re.MULTILINE)
    assert m
    return m.group(1)


def test_manager_user_name_matches_example_config() -> None:
    assert list(_asterisk_sections(MANAGER.read_text())) == [_example_username()]


def _legacy_filters(lines: Iterator[str]) -> list[tuple[bool, re.Pattern[str]]]:
    out = []
    for value in lines:
        negative = value.startswith("!")
        out.append((negative, re.compile(value[1:] if negative else value)))
    return out


def _passes(filters: list[tuple[bool, re.Pattern[str]]], event: str) -> bool:
    """Legacy manager.c semantics: include filters first (if any), then exclude filters."""
    payload = f"Event: {event}\r\nPrivilege: call,all\r\nChannel: PJSIP/trunk-00000001\r\n"
    includes = [p for neg, p in filters if not neg]
    excludes = [p for neg, p in filters if neg]
    if includes and not any(p.search(payload) for p in includes):
        return False
    return not any(p.search(payload) for p in excludes)


@pytest.mark.parametrize("variant", ["active", "commented alternative"])
def test_manager_event_filters_keep_needed_events(variant: str) -> None:
    if variant == "active":
        values = _manager_user()["eventfilter"]
    else:
        values = re.findall(r"^;eventfilter = (.+)$", MANAGER.read_text(), re.MULTILINE)
        assert values, "the commented positive-list alternative is missing"
    for value in values:
        assert ";" not in value, "a legacy filter cannot contain ';'"
    filters = _legacy_filters(iter(values))
    dropped = [e for e in NEEDED_EVENTS if not _passes(filters, e)]
    assert dropped == []
    assert [e for e in NOISE_EVENTS if _passes(filters, e)] == []


def test_manager_event_filter_lets_through_only_what_the_bridge_reads() -> None:
    # The active filter follows cti_bridge.ami.wanted: nothing it lists is unread, and the
    # regex's prefix matching lets no longer name through.
    filters = _legacy_filters(iter(_manager_user()["eventfilter"]))
    assert [e for e in UNREAD_EVENTS if _passes(filters, e)] == []
    includes = [p.pattern for neg, p in filters if not neg]
    (pattern,) = includes
    m = re.fullmatch(r"Event: \((.+)\)", pattern)
    assert m, pattern
    assert set(m.group(1).split("|")) == WANTED_EVENTS


# ---------------------------------------------------------------------------------------------
# Asterisk: dialplan hooks


_PRIORITY = re.compile(r"^;?\s*(exten|same)\s*=>\s*(.*)$")


def _dialplan_steps() -> list[tuple[str, str, str]]:
    """(context, extension, application call) for every priority, commented examples included."""
    steps: list[tuple[str, str, str]] = []
    context = exten = ""
    for raw in DIALPLAN.read_text().splitlines():
        m = re.fullmatch(r";?\[([^\]]+)\]\s*", raw)
        if m:
            context, exten = m.group(1), ""
            continue
        m = _PRIORITY.match(raw)
        if not m:
            continue
        kind, rest = m.groups()
        if kind == "exten":
            exten, _, rest = rest.partition(",")
            _, _, app = rest.partition(",")
        else:
            _, _, app = rest.partition(",")
        assert exten, f"'same =>' without an extension: {raw!r}"
        steps.append((context, exten, app.strip()))
    return steps


def test_dialplan_sets_agisighup_before_every_agi() -> None:
    steps = _dialplan_steps()
    agi_steps = [i for i, (_, _, app) in enumerate(steps) if app.startswith("AGI(")]
    assert len(agi_steps) >= 6
    for i in agi_steps:
        context, exten, app = steps[i]
        earlier = [a for c, e, a in steps[:i] if (c, e) == (context, exten)]
        assert "Set(AGISIGHUP=no)" in earlier, f"[{context}] {exten}: {app} without AGISIGHUP=no"


def test_dialplan_agi_calls_follow_the_contract() -> None:
    listen = config_mod.AgiConfig().listen
    contract = re.compile(rf"AGI\(agi://{re.escape(listen)}/newcall(,[^,()]*(\([^)]*\))?){{0,2}}\)")
    for context, exten, app in _dialplan_steps():
        if app.startswith("AGI("):
            assert contract.fullmatch(app), f"[{context}] {exten}: {app}"


def test_dialplan_inbound_context_is_a_default_trunk_context() -> None:
    """Calls entering the hook context must still be classified as inbound by default."""
    contexts = {c for c, _, _ in _dialplan_steps()}
    assert "from-trunk-cti" in contexts
    assert any(fnmatch.fnmatchcase("from-trunk-cti", p) for p in PbxConfig().trunk_contexts)


def test_dialplan_freepbx_hooks_end_properly() -> None:
    """A macro hook must end with MacroExit() (FreePBX 16) or Return() (Gosub, FreePBX 17)."""
    hooks = [a for c, _, a in _dialplan_steps() if c == "macro-dialout-trunk-predial-hook"]
    assert hooks.count("MacroExit()") == 1
    assert hooks.count("Return()") == 1


# ---------------------------------------------------------------------------------------------
# Asterisk: the dialplan hooks on a real Asterisk with the real FastAGI server
#
# The shipped extensions_cti.conf runs unchanged except for the AGI port, with stub
# destinations that record what reached them in AstDB: this is where a syntax slip, a wrong
# Goto target or a macro/Gosub hook that does not return would show.

_STUBS = """
[from-pstn]
exten => _.,1,Set(DB(cti/${EXTEN})=${CALLERID(num)}|${CTI_ACTION}|${AGISTATUS})
 same => n,Hangup()

[test-macro-hook]
exten => _X.,1,Set(OUTNUM=${EXTEN})
 same => n,Macro(dialout-trunk-predial-hook)
 same => n,Set(DB(cti/macro-${EXTEN})=${CALLERID(num)}|${CTI_ACTION}|${AGISTATUS})
 same => n,Hangup()

[test-gosub-hook]
exten => _X.,1,Set(OUTNUM=${EXTEN})
 same => n,Gosub(predial-hook-gosub,s,1())
 same => n,Set(DB(cti/gosub-${EXTEN})=${CALLERID(num)}|${CTI_ACTION}|${AGISTATUS})
 same => n,Hangup()
"""


def _gosub_variant(text: str) -> str:
    """The commented FreePBX 17 hook, uncommented under a name of its own."""
    block = text[text.index(";[macro-dialout-trunk-predial-hook]") :]
    lines = [ln[1:] for ln in block.splitlines() if ln.startswith(";")]
    lines[0] = "[predial-hook-gosub]"
    return "\n".join(lines) + "\n"


def _require_asterisk() -> str:
    from tests.e2e.lab import asterisk_binary

    binary = asterisk_binary()
    if binary is None:
        reason = "asterisk not installed (.ci/install-asterisk as root installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI=true: this test must run", pytrace=False)
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="module")
def hook_pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, int]]:
    """A private Asterisk running extensions_cti.conf; yields (Asterisk, AGI port)."""
    binary = _require_asterisk()
    from tests.e2e.lab import Asterisk, PortPicker, module_dir

    ports = PortPicker()
    agi_port = ports.port()
    rtp = ports.rtp_range(8)
    values = {
        "MODDIR": module_dir(),
        "DATADIR": "/usr/share/asterisk",
        "RTP_START": str(rtp[0]),
        "RTP_END": str(rtp[1]),
    }
    pbx = Asterisk("cti-hooks", tmp_path_factory.mktemp("asterisk"), values, binary)
    text = DIALPLAN.read_text()
    assert text.count("agi://127.0.0.1:4573/") >= 6
    dialplan = text.replace("agi://127.0.0.1:4573/", f"agi://127.0.0.1:{agi_port}/")
    pbx.write_config({"extensions.conf": dialplan + _gosub_variant(dialplan) + _STUBS})
    pbx.start()  # from the test's main thread, which outlives the process (PDEATHSIG)
    try:
        loaded = pbx.rx("dialplan show from-trunk-cti")
        assert "AGISIGHUP=no" in loaded, loaded + pbx.tail()
        yield pbx, agi_port
    finally:
        pbx.stop()


async def _originate(pbx: Any, target: str) -> None:
    await asyncio.to_thread(pbx.rx, f"channel originate Local/{target} application Wait 3")


async def _db(pbx: Any, key: str, *, wait: float = 10.0) -> str | None:
    """AstDB cti/<key>, waiting up to ``wait`` s for it to appear (None if it never does)."""
    deadline = time.monotonic() + wait
    while True:
        out = await asyncio.to_thread(pbx.rx, f"database get cti {key}")
        m = re.search(r"^Value: (.*)$", out, re.MULTILINE)
        if m:
            return m.group(1)
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _agi(port: int, decision: AgiDecision) -> AsyncIterator[list[AgiRequest]]:
    seen: list[AgiRequest] = []

    async def decide(request: AgiRequest) -> AgiDecision:
        seen.append(request)
        return decision

    server = AgiServer(AgiConfig(listen=f"127.0.0.1:{port}", timeout=2.0), decide)
    await server.start()
    try:
        yield seen
    finally:
        await server.stop(grace=1.0)


async def test_hook_dial_sets_caller_id_and_continues(hook_pbx: tuple[Any, int]) -> None:
    pbx, port = hook_pbx
    async with _agi(port, AgiDecision("dial", caller_id="4930999000")) as seen:
        await _originate(pbx, "4930111001@from-trunk-cti")
        assert await _db(pbx, "4930111001") == "4930999000|dial|SUCCESS"
        await _originate(pbx, "+4930111002@from-trunk-cti")
        assert await _db(pbx, "+4930111002") == "4930999000|dial|SUCCESS"
    assert [r.to for r in seen] == ["4930111001", "4930111002"]
    assert all(r.network_script == "newcall" and r.linkedid for r in seen)


async def test_hook_reject_hangs_up_before_routing(hook_pbx: tuple[Any, int]) -> None:
    pbx, port = hook_pbx
    async with _agi(port, AgiDecision("reject")) as seen:
        await _originate(pbx, "4930111003@from-trunk-cti")
        while not seen:
            await asyncio.sleep(0.05)
        # The routing stub must never run: give it the time a continuing call would take.
        assert await _db(pbx, "4930111003", wait=2.0) is None
    assert seen[0].to == "4930111003"


async def test_hook_fails_open_without_daemon(hook_pbx: tuple[Any, int]) -> None:
    pbx, _ = hook_pbx
    await _originate(pbx, "4930111004@from-trunk-cti")
    value = await _db(pbx, "4930111004")
    assert value is not None, "the call did not continue with the daemon down"
    assert value.split("|")[1:] == ["", "FAILURE"]


@pytest.mark.parametrize("hook", ["macro", "gosub"])
async def test_outbound_predial_hooks_return(hook_pbx: tuple[Any, int], hook: str) -> None:
    pbx, port = hook_pbx
    if hook == "macro" and "Macro" not in await asyncio.to_thread(
        pbx.rx, "core show application Macro"
    ):
        pytest.skip("this Asterisk has no app_macro (FreePBX 17 setups use the Gosub form)")
    async with _agi(port, AgiDecision("dial", caller_id="4930777")) as seen:
        await _originate(pbx, f"4930222{len(hook)}@test-{hook}-hook")
        assert await _db(pbx, f"{hook}-4930222{len(hook)}") == "4930777|dial|SUCCESS"
    assert [r.to for r in seen] == [f"4930222{len(hook)}"]

"""The shipped unit under a real systemd as PID 1: installed as the README's "Installing as a
service" says, against the lab's pbx and a fake Zammad on loopback.

systemd runs in a Debian bookworm tree booted in namespaces of its own (``.ci/systemd-tree``;
``.ci/install-systemd-tree`` makes it and installs this checkout into it). It shares the host's
network, so the service reaches the lab's AMI and the fake Zammad, and the lab's pbx reaches the
service's AGI port. Needs root; without root, or without both the tree and debootstrap, the
tests skip locally and fail under CI=true.

Each unit under test is a ``UnitCase``; the template unit is added to ``UNIT_CASES`` as an
instance (e.g. ``cti-bridge@lab.service``) with its own config and credential paths.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cti_bridge.demo.zammad import FakeZammad

from .conftest import _unavailable, attach_log
from .expect import answer, expect_calls, hangup, new_call
from .lab import Lab

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_TREE = REPO / ".ci" / "systemd-tree"
INSTALL_TREE = REPO / ".ci" / "install-systemd-tree"
TREE = Path(os.environ.get("CTI_SYSTEMD_TREE", "/opt/cti-bridge-ci/systemd-tree"))

# What systemctl start may take: Python's start-up plus the AMI login (READY=1 comes at login).
START_TIMEOUT = 60.0
# The watchdog test's drop-in: a short WatchdogSec= instead of the unit's 30 s, to be quick.
SHORT_WATCHDOG = "3s"
STATUS_TEXT = re.compile(r"^AMI connected; Zammad \w+; \d+ call\(s\)$")


@dataclass(frozen=True)
class UnitCase:
    """One unit as installed in the tree: the file shipped in systemd/, the name systemctl
    knows it by, and where its config and credentials live."""

    source: str
    name: str
    etc: str = "/etc/cti-bridge"
    config: str = "/etc/cti-bridge/cti-bridge.toml"
    state_dir: str = "/var/lib/private/cti-bridge"
    runtime_dir: str = "/run/cti-bridge"
    socket: str = "/run/cti-bridge/status.sock"

    @property
    def dropin_dir(self) -> str:
        return f"/etc/systemd/system/{self.name}.d"


UNIT_CASES = [pytest.param(UnitCase("cti-bridge.service", "cti-bridge.service"), id="plain")]


class Tree:
    """Commands inside the booted tree (through ``.ci/systemd-tree exec``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run(
        self, *cmd: str, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [str(SYSTEMD_TREE), "exec", str(self.root), *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"{shlex.join(cmd)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
        return r

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """A root-owned file of the given mode (written from the host into the tree)."""
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(target, mode)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, "-p", ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str, invocation: str) -> str:
        return self.run(
            "journalctl", "--no-pager", "-o", "cat", "-u", unit,
            f"_SYSTEMD_INVOCATION_ID={invocation}",
        ).stdout  # fmt: skip

    def journal_tail(self, unit: str, lines: int = 80) -> str:
        return self.run(
            "journalctl", "--no-pager", "-n", str(lines), "-u", unit, check=False
        ).stdout

    def wait_show(
        self,
        unit: str,
        props: tuple[str, ...],
        predicate: Callable[[dict[str, str]], bool],
        timeout: float = 30.0,
    ) -> dict[str, str]:
        """Until ``predicate`` holds for the unit's properties; the last properties."""
        deadline = time.monotonic() + timeout
        while True:
            shown = self.show(unit, *props)
            if predicate(shown):
                return shown
            if time.monotonic() > deadline:
                raise TimeoutError(f"{unit} not as awaited in {timeout} s: {shown}")
            time.sleep(0.2)


def _prepare(*cmd: str, timeout: float) -> None:
    """Run a setup script on the tree; its failure makes the tests unavailable."""
    r = subprocess.run([*cmd, str(TREE)], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        _unavailable(f"{shlex.join(cmd)} {TREE} failed ({r.returncode}): {r.stdout}{r.stderr}")


@pytest.fixture(scope="session")
def systemd_tree() -> Iterator[Tree]:
    """The booted tree with this checkout installed; always stopped at the end."""
    if os.geteuid() != 0:
        _unavailable("systemd tests need root (they boot systemd in namespaces)")
    if not (TREE / "lib/systemd/systemd").exists() and shutil.which("debootstrap") is None:
        _unavailable(f"no systemd tree at {TREE} and no debootstrap: run .ci/install-systemd-tree")
    _prepare(str(SYSTEMD_TREE), "make", timeout=900)
    try:
        _prepare(str(SYSTEMD_TREE), "start", timeout=120)
        _prepare(str(INSTALL_TREE), timeout=600)
        yield Tree(TREE)
    finally:
        subprocess.run([str(SYSTEMD_TREE), "stop", str(TREE)], timeout=30, check=False)


@pytest.fixture(scope="module")
def tree_zammad() -> Iterator[FakeZammad]:
    """One fake Zammad for the module: the installed config points at its URL."""
    with FakeZammad() as z:
        yield z


def lab_config(lab: Lab) -> str:
    """The shipped ``conf/cti-bridge.toml`` (README step 2), pointed at the lab's pbx: its
    AMI port and user, its trunk, and the AGI port its dialplan calls. No secret inside (the
    shipped ``secret_file``/``url_file`` name the credentials); spool and status socket stay
    at the shipped paths inside the unit's State/RuntimeDirectory."""
    text = (REPO / "conf" / "cti-bridge.toml").read_text("utf-8")
    lab_values = {
        ("ami", "port"): str(lab.pbx_ami_port),
        ("ami", "username"): json.dumps(lab.ami_username),
        ("pbx", "trunk_endpoints"): '["carrier"]',
        ("agi", "listen"): json.dumps(f"127.0.0.1:{lab.agi_port}"),
    }
    for (section, key), value in lab_values.items():
        text = _set_key(text, section, key, value)
    parsed = tomllib.loads(text)
    for (section, key), value in lab_values.items():
        assert parsed[section][key] == tomllib.loads(f"v = {value}")["v"], (section, key)
    return text


def _set_key(text: str, section: str, key: str, value: str) -> str:
    """``key = value`` in ``[section]`` of a TOML text, its other lines and comments kept."""
    head = re.search(rf"(?m)^\[{section}\]\n", text)
    assert head is not None, f"no [{section}] in conf/cti-bridge.toml"
    nxt = re.compile(r"(?m)^\[").search(text, head.end())
    end = nxt.start() if nxt else len(text)
    match = re.compile(rf"(?m)^{key} = .*$").search(text, head.end(), end)
    assert match is not None, f"no {key} in [{section}] of conf/cti-bridge.toml"
    return text[: match.start()] + f"{key} = {value}" + text[match.end() :]


@pytest.fixture(scope="module", params=UNIT_CASES)
def installed(
    request: pytest.FixtureRequest, systemd_tree: Tree, lab: Lab, tree_zammad: FakeZammad
) -> Iterator[UnitCase]:
    """The unit installed as the README says (unit file, config 0644, secrets 0600 root), an
    empty state directory (an earlier session's outbox must not post into this one)."""
    case: UnitCase = request.param
    t = systemd_tree
    t.run("systemctl", "stop", case.name, check=False)
    t.run("rm", "-rf", case.state_dir, case.dropin_dir)
    t.write(f"/etc/systemd/system/{case.name}", (REPO / "systemd" / case.source).read_text())
    t.run("install", "-d", "-m", "755", case.etc)
    t.write(case.config, lab_config(lab), 0o644)
    t.write(f"{case.etc}/ami-secret", lab.ami_secret + "\n", 0o600)
    t.write(f"{case.etc}/zammad-url", tree_zammad.url() + "\n", 0o600)
    t.run("systemctl", "daemon-reload")
    check = t.run("cti-bridge", "check", "--config", case.config, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    yield case
    t.run("systemctl", "disable", "--now", case.name, check=False)


@pytest.fixture
def unit(
    installed: UnitCase, systemd_tree: Tree, lab: Lab, request: pytest.FixtureRequest
) -> Iterator[UnitCase]:
    """The installed unit, stopped, with the lab's config and no drop-in; its journal is
    attached to a failing test's report."""
    t = systemd_tree
    t.run("systemctl", "stop", installed.name, check=False)
    t.run("rm", "-rf", installed.dropin_dir)
    t.write(installed.config, lab_config(lab), 0o644)
    t.run("systemctl", "daemon-reload")
    t.run("systemctl", "reset-failed", installed.name, check=False)
    attach_log(request, "service journal", lambda: t.journal_tail(installed.name))
    yield installed
    t.run("systemctl", "stop", installed.name, check=False)


def start(t: Tree, case: UnitCase, *how: str) -> dict[str, str]:
    """``systemctl start`` (or ``how``), which returns once the daemon sent READY=1."""
    t.run("systemctl", *(how or ("start",)), case.name, timeout=START_TIMEOUT)
    return t.show(case.name, "ActiveState", "SubState", "StatusText", "MainPID", "NRestarts")


def wait_ami_connected(t: Tree, case: UnitCase, timeout: float = 20.0) -> dict[str, object]:
    """Until ``cti-bridge status --json`` inside the tree says AMI is logged in."""
    deadline = time.monotonic() + timeout
    while True:
        r = t.run("cti-bridge", "status", "--json", "--config", case.config, check=False)
        if r.returncode == 0:
            doc = json.loads(r.stdout)
            if doc["ami"]["connected"]:
                return doc
        if time.monotonic() > deadline:
            raise TimeoutError(f"AMI not connected in {timeout} s: {r.stdout}{r.stderr}")
        time.sleep(0.2)


def wait_restarted(t: Tree, case: UnitCase, before: dict[str, str]) -> dict[str, str]:
    """Until systemd restarted the service: another MainPID, active, NRestarts counted up."""
    return t.wait_show(
        case.name,
        ("ActiveState", "SubState", "MainPID", "NRestarts", "Result", "StatusText"),
        lambda s: (
            s["ActiveState"] == "active"
            and s["MainPID"] not in ("0", before["MainPID"])
            and int(s["NRestarts"]) > int(before["NRestarts"])
        ),
        timeout=60,
    )


def test_start_reports_ready(systemd_tree: Tree, unit: UnitCase):
    shown = start(systemd_tree, unit, "enable", "--now")
    assert (shown["ActiveState"], shown["SubState"]) == ("active", "running"), shown
    # The daemon's own sd_notify STATUS= line, sent with READY=1 at the AMI login.
    assert STATUS_TEXT.match(shown["StatusText"]), shown


def test_status_socket_answers(systemd_tree: Tree, unit: UnitCase):
    start(systemd_tree, unit)
    doc = wait_ami_connected(systemd_tree, unit)
    assert doc["ami"]["connected"] is True
    r = systemd_tree.run("cti-bridge", "status", "--config", unit.config)
    assert "AMI" in r.stdout
    # Socket 0660 in a 0750 directory, both of the service's (dynamic) group: README "Who may
    # read the status". Compared by number: the tree has no libnss-systemd to name it.
    main_pid = systemd_tree.show(unit.name, "MainPID")["MainPID"]
    gid = systemd_tree.run("awk", "/^Gid:/ { print $2 }", f"/proc/{main_pid}/status").stdout
    ls = systemd_tree.run("stat", "-c", "%a %g", unit.runtime_dir, unit.socket)
    assert ls.stdout.split() == ["750", gid.strip(), "660", gid.strip()]


def test_call_reaches_zammad(
    systemd_tree: Tree, unit: UnitCase, clean_lab: Lab, tree_zammad: FakeZammad
):
    start(systemd_tree, unit)
    wait_ami_connected(systemd_tree, unit)
    tree_zammad.reset()  # forget `cti-bridge check`'s probe and anything else before this call
    clean_lab.set_mode("alice", "ring")
    clean_lab.set_mode("bob", "answer")
    h = clean_lab.call("4930555100", "491710000091", talk=1)
    assert clean_lab.originate_response(h)["Response"] == "Success"
    expect_calls(
        tree_zammad,
        [
            [
                new_call("491710000091", "4930555100", "in"),
                answer("in", user="Jürgen Müller", answeringNumber="102"),
                hangup("in", "normalClearing"),
            ]
        ],
    )
    # Secrets arrive as credentials and never reach the log.
    logged = systemd_tree.journal_tail(unit.name, 2000)
    assert clean_lab.ami_secret not in logged and tree_zammad.token not in logged


def test_sigkill_is_restarted(systemd_tree: Tree, unit: UnitCase):
    before = start(systemd_tree, unit)
    systemd_tree.run("systemctl", "kill", "-s", "KILL", unit.name)
    after = wait_restarted(systemd_tree, unit, before)
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1, after
    assert after["SubState"] == "running", after


def test_wedged_daemon_is_killed_by_watchdog(systemd_tree: Tree, unit: UnitCase):
    systemd_tree.write(
        f"{unit.dropin_dir}/watchdog.conf", f"[Service]\nWatchdogSec={SHORT_WATCHDOG}\n"
    )
    systemd_tree.run("systemctl", "daemon-reload")
    before = start(systemd_tree, unit)
    timeouts_before = watchdog_timeouts(systemd_tree, unit)
    # A stopped process sends no WATCHDOG=1: exactly what a wedged event loop looks like.
    systemd_tree.run("systemctl", "kill", "-s", "STOP", unit.name)
    after = wait_restarted(systemd_tree, unit, before)
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1, after
    assert watchdog_timeouts(systemd_tree, unit) == timeouts_before + 1


def watchdog_timeouts(t: Tree, case: UnitCase) -> int:
    """How often systemd logged a watchdog timeout for the unit (its own messages, PID 1)."""
    log = t.run("journalctl", "--no-pager", "-o", "cat", "-u", case.name, "_PID=1").stdout
    return log.count("Watchdog timeout")


def test_config_error_exits_2_and_is_not_restarted(systemd_tree: Tree, unit: UnitCase, lab: Lab):
    before = start(systemd_tree, unit)
    good = lab_config(lab)
    bad = good.replace(f"port = {lab.pbx_ami_port}\n", 'port = "not-a-port"\n')
    assert bad != good
    systemd_tree.write(unit.config, bad, 0o644)
    r = systemd_tree.run("systemctl", "restart", unit.name, timeout=START_TIMEOUT, check=False)
    assert r.returncode != 0, r
    props = ("ActiveState", "Result", "ExecMainStatus", "NRestarts", "InvocationID")
    failed = systemd_tree.show(unit.name, *props)
    assert failed["ActiveState"] == "failed", failed
    assert (failed["Result"], failed["ExecMainStatus"]) == ("exit-code", "2"), failed
    assert failed["NRestarts"] == before["NRestarts"], failed
    # Nor restarted later (the unit's RestartSec= is 2 s).
    time.sleep(4)
    assert systemd_tree.show(unit.name, *props) == failed
    # All the daemon said: one line naming the file and the key.
    said = systemd_tree.journal(unit.name, failed["InvocationID"]).splitlines()
    assert len(said) == 1, said
    assert said[0].startswith(f"cti-bridge: {unit.config}: [ami] port: "), said
    status = systemd_tree.run("systemctl", "status", "--no-pager", unit.name, check=False).stdout
    assert "(code=exited, status=2)" in status and said[0] in status, status

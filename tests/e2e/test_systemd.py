"""The shipped unit under a real systemd as PID 1: installed as the README's "Installing as a
service" says, against the lab's pbx and a fake Zammad on loopback.

systemd runs in a Debian bookworm tree booted in namespaces of its own (``.ci/systemd-tree``;
``.ci/install-systemd-tree`` makes it and installs this checkout into it). It shares the host's
network, so the service reaches the lab's AMI and the fake Zammad, and the lab's pbx reaches the
service's AGI port. Needs root; without root, or without both the tree and debootstrap, the
tests skip locally and fail under CI=true.

Each unit under test is a ``UnitCase``; a deployment (``UNIT_CASES``) is the plain unit alone,
or two instances of the template unit (``cti-bridge@pbx1``, ``cti-bridge@pbx2``) running at the
same time, each with its own config, credentials and fake Zammad. Every check runs on every
unit of the deployment. Both instances watch the same lab pbx, so both post the same call: their
configs differ in one ``[users]`` name, which shows in each Zammad that it got the posts of its
own instance. The units do not depend on the Asterisk version: the module runs on the first
Asterisk of the lab only (``[ast16]`` by default), which keeps CI time down.
"""

from __future__ import annotations

import contextlib
import functools
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
from typing import Any

import pytest

from cti_bridge.demo.zammad import FakeZammad

from .conftest import TARGETS, _unavailable, attach_log
from .expect import answer, assert_once, expect_calls, hangup, new_call
from .lab import Lab, PortPicker

pytestmark = [
    pytest.mark.e2e,
    # One Asterisk version only (see above): this parametrization replaces the lab fixture's.
    pytest.mark.parametrize(
        "asterisk_bin", TARGETS[:1], ids=[t.label for t in TARGETS[:1]], indirect=True,
        scope="session",
    ),
]  # fmt: skip

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
    knows it by, where its config, credentials, state and socket live, and the name the
    answering extension 102 gets in its config (to tell the instances' posts apart)."""

    source: str
    name: str
    config: str
    credentials: str  # the prefix of the credential files: <credentials>ami-secret
    state_dir: str
    runtime_dir: str
    instance: str | None = None
    agent: str = "Jürgen Müller"  # the lab's CallerIDName of 102: no [users] entry

    @property
    def socket(self) -> str:
        return f"{self.runtime_dir}/status.sock"

    @property
    def dropin_dir(self) -> str:
        return f"/etc/systemd/system/{self.name}.d"

    @property
    def selects(self) -> tuple[str, ...]:
        """How ``cti-bridge status``/``check`` name this unit's config."""
        return ("--instance", self.instance) if self.instance else ("--config", self.config)


PLAIN = UnitCase(
    "cti-bridge.service", "cti-bridge.service", "/etc/cti-bridge/cti-bridge.toml",
    "/etc/cti-bridge/", "/var/lib/private/cti-bridge", "/run/cti-bridge",
)  # fmt: skip


def instance(name: str, agent: str) -> UnitCase:
    return UnitCase(
        "cti-bridge@.service", f"cti-bridge@{name}.service", f"/etc/cti-bridge/{name}.toml",
        f"/etc/cti-bridge/{name}-", f"/var/lib/private/cti-bridge/{name}",
        f"/run/cti-bridge/{name}", name, agent,
    )  # fmt: skip


UNIT_CASES = [
    pytest.param((PLAIN,), id="plain"),
    pytest.param(
        (instance("pbx1", "Jürgen Müller"), instance("pbx2", "Agent of pbx2")), id="template"
    ),
]
# Both layouts own /var/lib/cti-bridge (a symlink for the plain unit, a directory of symlinks
# for the instances): switching between them starts from none.
STATE_DIRS = ("/var/lib/cti-bridge", "/var/lib/private/cti-bridge")


@dataclass(frozen=True)
class Deployed:
    """A unit installed in the tree, the fake Zammad its credential points at, its config."""

    case: UnitCase
    zammad: FakeZammad
    config_text: str

    @property
    def name(self) -> str:
        return self.case.name


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


def lab_config(lab: Lab, case: UnitCase, agi_port: int) -> str:
    """The shipped ``conf/cti-bridge.toml`` (README step 2), pointed at the lab's pbx: its
    AMI port and user, its trunk, and an AGI port (the one its dialplan calls, or another: two
    units on one host cannot share one); the unit's name for
    extension 102 in ``[users]``. No secret inside (the shipped ``secret_file``/``url_file``
    name the credentials), no outbox or socket path: the unit's directories are the default."""
    text = (REPO / "conf" / "cti-bridge.toml").read_text("utf-8")
    lab_values = {
        ("ami", "port"): str(lab.pbx_ami_port),
        ("ami", "username"): json.dumps(lab.ami_username),
        ("pbx", "trunk_endpoints"): '["carrier"]',
        ("agi", "listen"): json.dumps(f"127.0.0.1:{agi_port}"),
    }
    for (section, key), value in lab_values.items():
        text = _set_key(text, section, key, value)
    if case.agent != PLAIN.agent:
        text = text.replace("[users]\n", f'[users]\n"102" = {json.dumps(case.agent)}\n', 1)
    parsed = tomllib.loads(text)
    assert parsed.get("users", {}).get("102", PLAIN.agent) == case.agent
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
    request: pytest.FixtureRequest, systemd_tree: Tree, lab: Lab
) -> Iterator[list[Deployed]]:
    """The deployment's units installed as the README says (unit file, config 0644, secrets
    0600 root), each with a fake Zammad of its own, no state left from an earlier session
    (an old outbox must not post into this one)."""
    cases: tuple[UnitCase, ...] = request.param
    t = systemd_tree
    t.run("systemctl", "stop", PLAIN.name, "cti-bridge@*.service", check=False)
    t.run("rm", "-rf", *STATE_DIRS, *(c.dropin_dir for c in cases))
    t.run("install", "-d", "-m", "755", "/etc/cti-bridge")
    ports = PortPicker()
    ports.taken.add(lab.agi_port)
    with contextlib.ExitStack() as stack:
        units: list[Deployed] = []
        for case in cases:
            zammad = stack.enter_context(FakeZammad(token=f"tok3n-{case.instance or 'plain'}"))
            t.write(
                f"/etc/systemd/system/{case.source}", (REPO / "systemd" / case.source).read_text()
            )
            # The first unit answers the lab dialplan's AGI hook; the others listen elsewhere.
            agi_port = lab.agi_port if not units else ports.port()
            text = lab_config(lab, case, agi_port)
            t.write(case.config, text, 0o644)
            t.write(f"{case.credentials}ami-secret", lab.ami_secret + "\n", 0o600)
            t.write(f"{case.credentials}zammad-url", zammad.url() + "\n", 0o600)
            units.append(Deployed(case, zammad, text))
        t.run("systemctl", "daemon-reload")
        for case in cases:
            check = t.run("cti-bridge", "check", *case.selects, check=False)
            assert check.returncode == 0, check.stdout + check.stderr
        yield units
        t.run("systemctl", "disable", "--now", *(c.name for c in cases), check=False)


@pytest.fixture
def units(
    installed: list[Deployed], systemd_tree: Tree, lab: Lab, request: pytest.FixtureRequest
) -> Iterator[list[Deployed]]:
    """The installed units, stopped, with the lab's config and no drop-in; their journals are
    attached to a failing test's report."""
    t = systemd_tree
    names = [u.name for u in installed]
    t.run("systemctl", "stop", *names, check=False)
    t.run("rm", "-rf", *(u.case.dropin_dir for u in installed))
    for u in installed:
        t.write(u.case.config, u.config_text, 0o644)
        attach_log(request, f"journal of {u.name}", functools.partial(t.journal_tail, u.name))
    t.run("systemctl", "daemon-reload")
    t.run("systemctl", "reset-failed", *names, check=False)
    yield installed
    t.run("systemctl", "stop", *names, check=False)


PROPS = ("ActiveState", "SubState", "StatusText", "MainPID", "NRestarts")


def start(t: Tree, units: list[Deployed], *how: str) -> dict[str, dict[str, str]]:
    """``systemctl start`` (or ``how``) of all units at once, which returns once each daemon
    sent READY=1; unit name -> its properties."""
    t.run("systemctl", *(how or ("start",)), *(u.name for u in units), timeout=START_TIMEOUT)
    return {u.name: t.show(u.name, *PROPS) for u in units}


def wait_ami_connected(t: Tree, case: UnitCase, timeout: float = 20.0) -> dict[str, Any]:
    """Until ``cti-bridge status --json`` inside the tree says AMI is logged in."""
    deadline = time.monotonic() + timeout
    while True:
        r = t.run("cti-bridge", "status", "--json", *case.selects, check=False)
        if r.returncode == 0:
            doc = json.loads(r.stdout)
            if doc["ami"]["connected"]:
                return doc
        if time.monotonic() > deadline:
            raise TimeoutError(f"AMI not connected in {timeout} s: {r.stdout}{r.stderr}")
        time.sleep(0.2)


def wait_restarted(t: Tree, name: str, before: dict[str, str]) -> dict[str, str]:
    """Until systemd restarted the service: another MainPID, active, NRestarts counted up."""
    return t.wait_show(
        name,
        ("ActiveState", "SubState", "MainPID", "NRestarts", "Result", "StatusText"),
        lambda s: (
            s["ActiveState"] == "active"
            and s["MainPID"] not in ("0", before["MainPID"])
            and int(s["NRestarts"]) > int(before["NRestarts"])
        ),
        timeout=60,
    )


def test_start_reports_ready(systemd_tree: Tree, units: list[Deployed]):
    shown = start(systemd_tree, units, "enable", "--now")
    for name, props in shown.items():
        assert (props["ActiveState"], props["SubState"]) == ("active", "running"), (name, props)
        # The daemon's own sd_notify STATUS= line, sent with READY=1 at the AMI login.
        assert STATUS_TEXT.match(props["StatusText"]), (name, props)


def test_each_unit_answers_on_its_own_status_socket(systemd_tree: Tree, units: list[Deployed]):
    t = systemd_tree
    start(t, units)
    sockets, outboxes = set(), set()
    for u in units:
        doc = wait_ami_connected(t, u.case)
        assert doc["ami"]["connected"] is True
        # The socket that answered is the unit's: it names the unit's own outbox.
        outbox = str(doc["outbox"]["path"])
        assert outbox.startswith(u.case.state_dir.replace("/private", "") + "/"), (u.name, doc)
        sockets.add(u.case.socket)
        outboxes.add(outbox)
        r = t.run("cti-bridge", "status", *u.case.selects)
        assert "AMI" in r.stdout
        # Socket 0660 in a 0750 directory, both of the service's (dynamic) group: README "Who
        # may read the status". Compared by number: the tree has no libnss-systemd to name it.
        main_pid = t.show(u.name, "MainPID")["MainPID"]
        gid = t.run("awk", "/^Gid:/ { print $2 }", f"/proc/{main_pid}/status").stdout
        ls = t.run("stat", "-c", "%a %g", u.case.runtime_dir, u.case.socket)
        assert ls.stdout.split() == ["750", gid.strip(), "660", gid.strip()], u.name
    assert len(sockets) == len(outboxes) == len(units)


def test_call_reaches_each_units_own_zammad_once(
    systemd_tree: Tree, units: list[Deployed], clean_lab: Lab
):
    """Every unit watches the lab's pbx: each Zammad gets the call once, with the name its
    own unit's config gives extension 102 (posts never cross to another unit's Zammad)."""
    for u in units:
        start(systemd_tree, [u])
        wait_ami_connected(systemd_tree, u.case)
        u.zammad.reset()  # forget `cti-bridge check`'s probe and anything before this call
    clean_lab.set_mode("alice", "ring")
    clean_lab.set_mode("bob", "answer")
    h = clean_lab.call("4930555100", "491710000091", talk=1)
    assert clean_lab.originate_response(h)["Response"] == "Success"
    for u in units:
        expected = [
            new_call("491710000091", "4930555100", "in"),
            answer("in", user=u.case.agent, answeringNumber="102"),
            hangup("in", "normalClearing"),
        ]
        expect_calls(u.zammad, [expected])
        assert_once(u.zammad)
        # Secrets arrive as credentials and never reach the log.
        logged = systemd_tree.journal_tail(u.name, 2000)
        assert clean_lab.ami_secret not in logged and u.zammad.token not in logged


def test_sigkill_is_restarted_and_leaves_the_others_running(
    systemd_tree: Tree, units: list[Deployed]
):
    t = systemd_tree
    before = start(t, units)
    for u in units:
        t.run("systemctl", "kill", "-s", "KILL", u.name)
        after = wait_restarted(t, u.name, before[u.name])
        assert int(after["NRestarts"]) == int(before[u.name]["NRestarts"]) + 1, after
        assert after["SubState"] == "running", after
        for other in units:
            if other is not u:
                assert t.show(other.name, "MainPID")["MainPID"] == before[other.name]["MainPID"]
        before[u.name] = t.show(u.name, *PROPS)


def test_wedged_daemon_is_killed_by_watchdog(systemd_tree: Tree, units: list[Deployed]):
    t = systemd_tree
    for u in units:
        t.write(f"{u.case.dropin_dir}/watchdog.conf", f"[Service]\nWatchdogSec={SHORT_WATCHDOG}\n")
    t.run("systemctl", "daemon-reload")
    before = start(t, units)
    timeouts_before = {u.name: watchdog_timeouts(t, u.name) for u in units}
    # A stopped process sends no WATCHDOG=1: exactly what a wedged event loop looks like.
    # The main process only: after stopping it, systemd's walk of the rest of the cgroup (there
    # is no other process) now and then fails with EIO in the tree, making the command fail.
    for u in units:
        t.run("systemctl", "kill", "--kill-whom=main", "-s", "STOP", u.name)
    for u in units:
        after = wait_restarted(t, u.name, before[u.name])
        assert int(after["NRestarts"]) == int(before[u.name]["NRestarts"]) + 1, after
        assert watchdog_timeouts(t, u.name) == timeouts_before[u.name] + 1


def watchdog_timeouts(t: Tree, name: str) -> int:
    """How often systemd logged a watchdog timeout for the unit (its own messages, PID 1)."""
    log = t.run("journalctl", "--no-pager", "-o", "cat", "-u", name, "_PID=1").stdout
    return log.count("Watchdog timeout")


def test_config_error_exits_2_and_is_not_restarted(
    systemd_tree: Tree, units: list[Deployed], lab: Lab
):
    t = systemd_tree
    before = start(t, units)
    for u in units:
        good = u.config_text
        bad = good.replace(f"port = {lab.pbx_ami_port}\n", 'port = "not-a-port"\n')
        assert bad != good
        t.write(u.case.config, bad, 0o644)
    names = [u.name for u in units]
    r = t.run("systemctl", "restart", *names, timeout=START_TIMEOUT, check=False)
    assert r.returncode != 0, r
    props = ("ActiveState", "Result", "ExecMainStatus", "NRestarts", "InvocationID")
    failed = {name: t.show(name, *props) for name in names}
    for name, shown in failed.items():
        assert shown["ActiveState"] == "failed", shown
        assert (shown["Result"], shown["ExecMainStatus"]) == ("exit-code", "2"), shown
        assert shown["NRestarts"] == before[name]["NRestarts"], shown
    # Nor restarted later (the unit's RestartSec= is 2 s).
    time.sleep(4)
    for u in units:
        shown = failed[u.name]
        assert t.show(u.name, *props) == shown
        # All the daemon said: one line naming the file and the key.
        said = t.journal(u.name, shown["InvocationID"]).splitlines()
        assert len(said) == 1, said
        assert said[0].startswith(f"cti-bridge: {u.case.config}: [ami] port: "), said
        status = t.run("systemctl", "status", "--no-pager", u.name, check=False).stdout
        assert "(code=exited, status=2)" in status and said[0] in status, status

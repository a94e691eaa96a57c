"""Fixtures of the e2e lab: one pbx+world pair per Asterisk version and session, one fake
Zammad and one daemon per test, the daemon's log attached to every failing test report.

Every lab test runs on each Asterisk of ``asterisk_targets()`` (ids ``[ast16]``, ``[ast22]``;
``CTI_E2E_ASTERISK=<path>`` picks a single one). pytest groups the tests by version, so one lab
runs at a time. An Asterisk missing: under CI (CI=true) its tests fail, locally they are
skipped with the reason. Install them with ``.ci/install-asterisk`` and
``.ci/install-asterisk22`` (as root).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from cti_bridge.demo.zammad import FakeZammad

from .expect import calls_in_order
from .lab import (
    AsteriskTarget,
    Daemon,
    Lab,
    TcpProxy,
    asterisk_targets,
    daemon_available,
    daemon_config,
    lab_dir,
)

IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: e2e tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    if rep.failed:
        for title, source in getattr(item, "_e2e_logs", []):
            with contextlib.suppress(Exception):
                rep.sections.append((title, source()))
    return rep


def attach_log(request: pytest.FixtureRequest, title: str, source: Callable[[], str]) -> None:
    node = request.node
    if not hasattr(node, "_e2e_logs"):
        node._e2e_logs = []
    node._e2e_logs.append((title, source))


TARGETS = asterisk_targets()


@pytest.fixture(scope="session", params=TARGETS, ids=[t.label for t in TARGETS])
def asterisk_bin(request: pytest.FixtureRequest) -> str:
    target: AsteriskTarget = request.param
    reason = target.unavailable()
    if reason is not None:
        _unavailable(reason)
    assert target.path is not None
    return target.path


@pytest.fixture(scope="session")
def lab(asterisk_bin: str) -> Iterator[Lab]:
    with lab_dir() as d:
        the_lab = Lab(d, asterisk_bin)
        try:
            the_lab.start()
            yield the_lab
        finally:
            the_lab.stop()


@pytest.fixture
def clean_lab(lab: Lab, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """The shared lab, idle, every handset answering, before and after the test."""
    attach_log(request, "pbx log", lambda: lab.pbx.tail(80))
    attach_log(request, "world log", lambda: lab.world.tail(40))
    _reset(lab)
    mark = lab.pbx_ami.mark()
    yield lab
    rep = getattr(request.node, "rep_call", None)
    if RECORD_DIR and rep is not None and (rep.passed or hasattr(rep, "wasxfail")):
        # An expected failure is a call the model gets wrong today: its trace is wanted most.
        record_trace(Path(RECORD_DIR), request, lab.pbx_ami.since(mark), stored=rep.passed)
    _reset(lab)


RECORD_DIR = os.environ.get("CTI_E2E_RECORD", "")
# Per-channel noise left out of recordings (the daemon's AMI user never gets these either).
UNRECORDED = frozenset({"VarSet", "TestEvent", "RTCPSent", "RTCPReceived"})


def record_trace(
    where: Path, request: pytest.FixtureRequest, events: list[dict[str, str]], *, stored: bool
) -> None:
    """Write the pbx's AMI events of a test as ``<test>.jsonl`` and, when it passed
    (``stored``), what Zammad stored into ``EXPECTED.json`` (CTI_E2E_RECORD=<dir>): traces of
    this lab for replay tests. An xfailed test's outcome is not what Zammad must get, so its
    expectation is written by hand from the test."""
    name = request.node.name.replace("[", "_").replace("]", "").replace("-", "_")
    where.mkdir(parents=True, exist_ok=True)
    with (where / f"{name}.jsonl").open("w", encoding="utf-8") as f:
        for ev in events:
            if ev.get("Event") in UNRECORDED:
                continue
            clean = {k: v for k, v in ev.items() if not k.startswith("_")}
            f.write(json.dumps(clean, ensure_ascii=False) + "\n")
    z = request.node.funcargs.get("zammad")
    if stored and isinstance(z, FakeZammad):
        expected_file = where / "EXPECTED.json"
        doc = json.loads(expected_file.read_text("utf-8")) if expected_file.exists() else {}
        doc[name] = [
            [{k: v for k, v in ev.items() if k != "callId"} for ev in call.events]
            for call in calls_in_order(z)
        ]
        expected_file.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", "utf-8")


def _reset(lab: Lab) -> None:
    lab.hangup_all()
    try:
        lab.wait_idle(timeout=10)
    except TimeoutError:
        lab.hangup_all()
        lab.wait_idle(timeout=10)
    lab.reset_modes()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "zammad(**kwargs): FakeZammad keyword arguments for the zammad fixture"
    )


@pytest.fixture
def zammad(request: pytest.FixtureRequest) -> Iterator[FakeZammad]:
    """A fresh fake Zammad; ``@pytest.mark.zammad(blocked=(...), ...)`` configures it."""
    marker = request.node.get_closest_marker("zammad")
    with FakeZammad(**(marker.kwargs if marker else {})) as z:
        yield z


@pytest.fixture(scope="session")
def daemon_runnable() -> None:
    reason = daemon_available()
    if reason is not None:
        # The daemon is the product: missing it is a failure, not a skip.
        pytest.fail(reason, pytrace=False)


DaemonFactory = Callable[..., Daemon]


@pytest.fixture
def start_daemon(
    clean_lab: Lab,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    daemon_runnable: None,
) -> Iterator[DaemonFactory]:
    """``start_daemon(zammad, ami_port=None, users=None, wait=True, ami_secret=None,
    zammad_url=None, report_internal=False, extra_config="", dry_run=False)`` -> a running
    daemon, config and outbox in a directory of its own; ``extra_config`` is TOML appended to the
    file (e.g. ``[web]``, ``[dial]``, ``[[route]]``).

    ``ami_port`` lets a test put a TcpProxy between the daemon and the pbx's AMI.
    """
    started: list[Daemon] = []

    def factory(
        zammad: FakeZammad,
        *,
        ami_port: int | None = None,
        users: dict[str, str] | None = None,
        wait: bool = True,
        ami_secret: str | None = None,
        zammad_url: str | None = None,
        report_internal: bool = False,
        extra_config: str = "",
        dry_run: bool = False,
    ) -> Daemon:
        d = tmp_path / f"daemon{len(started)}"
        d.mkdir()
        cfg = daemon_config(
            d,
            ami_port=ami_port or clean_lab.pbx_ami_port,
            ami_username=clean_lab.ami_username,
            ami_secret=clean_lab.ami_secret if ami_secret is None else ami_secret,
            zammad_url=zammad.url() if zammad_url is None else zammad_url,
            agi_port=clean_lab.agi_port,
            users=users,
            report_internal=report_internal,
            extra=extra_config,
        )
        daemon = Daemon(cfg, d / "daemon.log", dry_run=dry_run)
        started.append(daemon)
        attach_log(request, f"daemon log {len(started)}", daemon.log_tail)
        daemon.start()
        if wait:
            daemon.wait_ready()
        return daemon

    yield factory
    for daemon in started:
        daemon.stop()


@pytest.fixture
def daemon(start_daemon: DaemonFactory, zammad: FakeZammad) -> Daemon:
    return start_daemon(zammad)


@pytest.fixture
def ami_proxy(clean_lab: Lab) -> Iterator[TcpProxy]:
    proxy = TcpProxy(("127.0.0.1", clean_lab.pbx_ami_port))
    yield proxy
    proxy.close()

"""``cti-bridge demo`` without Asterisk: one line saying how to install it, exit 2."""

from __future__ import annotations

from tests.support.cli import cli


def test_demo_without_asterisk_says_how_to_install_it() -> None:
    res = cli("demo", "--once", "--asterisk", "/nonexistent/asterisk")
    assert res.returncode == 2
    assert res.stdout == ""
    (line,) = res.stderr.splitlines()
    assert "Asterisk is not installed" in line and "sudo .ci/install-asterisk" in line

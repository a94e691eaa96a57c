"""The demo lab's own AMI user (used when conf/asterisk/ is not installed beside the package)."""

from __future__ import annotations

from pathlib import Path

from cti_bridge.ami.wanted import manager_eventfilters
from cti_bridge.demo import lab


def test_fallback_filters_are_the_products_filters() -> None:
    assert list(lab.FALLBACK_FILTERS) == manager_eventfilters()


def test_fallback_user_reads_dialplan_and_may_originate(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(lab, "MANAGER_CTI", tmp_path / "absent.conf")
    the_lab = lab.Lab.__new__(lab.Lab)  # only the text is needed, not running Asterisks
    the_lab.ami_username = "cti-bridge"
    the_lab.ami_secret = "s3cret"
    text = lab.Lab.manager_cti_conf(the_lab)
    lines = text.splitlines()
    assert "read = system,call,agent,user,dialplan" in lines
    assert "write = call,reporting,originate" in lines
    assert [ln.removeprefix("eventfilter = ") for ln in lines if ln.startswith("eventfilter")] == (
        manager_eventfilters()
    )

"""Shared fixtures. Helpers for specific areas live in tests/support/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The product side's read-only corpus; tests skip clearly when it is absent.
CORPUS = Path(os.environ.get("CTI_BRIDGE_CORPUS", ROOT.parent / "shared" / "corpus"))


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"AMI corpus not found at {CORPUS} (set CTI_BRIDGE_CORPUS)")
    return CORPUS


PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _no_proxy_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Zammad client honours *_PROXY variables: loopback test traffic must not use them."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)

#!/usr/bin/env bash
# The whole test suite on a fresh machine, in one command: ./scripts/test.sh [pytest args]
# Creates .venv, installs the package with its test extras; as root also installs Asterisk 16 and
# 22 for the end-to-end lab, Chromium for the browser tests and a Debian tree that boots systemd
# for the unit tests (otherwise those tests skip, or fail under CI=true); then ruff, mypy and
# pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
    bash .ci/install-asterisk
    bash .ci/install-asterisk22
    bash .ci/install-chromium  # headless Chromium + chromedriver: the dial pages and /calls
else
    echo "test.sh: not root: skipping the Asterisk and systemd-tree installs (e2e tests need them)"
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
[ "$(id -u)" != 0 ] || .ci/install-systemd-tree  # systemd as PID 1 for tests/e2e/test_systemd.py

.venv/bin/ruff check cti_bridge tests bench
.venv/bin/mypy
# Three workers: most e2e time is spent waiting on ringing phones, not on the two cores. The
# systemd tests share one booted tree (one machine-wide resource), so they run after, alone.
# Arguments naming test paths run just those, in one pytest run.
SYSTEMD_TESTS=tests/e2e/test_systemd.py
for arg in "$@"; do
    if [ -e "${arg%%::*}" ]; then
        exec .venv/bin/python -m pytest -n "${CTI_TEST_WORKERS:-3}" "$@"
    fi
done
.venv/bin/python -m pytest -n "${CTI_TEST_WORKERS:-3}" --ignore "$SYSTEMD_TESTS" "$@"
exec .venv/bin/python -m pytest -p no:xdist "$@" "$SYSTEMD_TESTS"

#!/usr/bin/env bash
# The whole test suite on a fresh machine, in one command: ./scripts/test.sh [pytest args]
# Creates .venv, installs the package with its test extras; as root also installs Asterisk 16 and
# 22 for the end-to-end lab and a Debian tree that boots systemd for the unit tests (otherwise
# those tests skip, or fail under CI=true); then ruff, mypy and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
    bash .ci/install-asterisk
    bash .ci/install-asterisk22
    bash .ci/install-chromium  # the /calls page in a real headless browser
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
exec .venv/bin/python -m pytest "$@"

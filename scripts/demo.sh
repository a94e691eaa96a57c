#!/usr/bin/env bash
# See the bridge work on a fresh machine, in one command: ./scripts/demo.sh [cti-bridge demo args]
# As root it first installs Asterisk 16 the way ./scripts/test.sh does (.ci/install-asterisk;
# a quick no-op once done). Then it creates .venv, installs the package into it (as a user
# would: not editable) and runs `cti-bridge demo --once`: a private Asterisk on loopback, a
# Zammad stand-in and the bridge, a round of calls, the caller log; exit 0 when every call came
# out as expected. Without arguments it runs --once; `./scripts/demo.sh` with other arguments
# passes them instead (e.g. none of them: `./scripts/demo.sh --asterisk /usr/sbin/asterisk`).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
    bash .ci/install-asterisk
else
    echo "demo.sh: not root: skipping the Asterisk install (the demo needs an asterisk)"
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet .
[ "$#" -gt 0 ] || set -- --once
exec .venv/bin/cti-bridge demo "$@"

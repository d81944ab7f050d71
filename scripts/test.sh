#!/usr/bin/env bash
# Sets up and runs every check on a fresh machine: makes .venv, installs
# perpnet with its test extras, then runs the suite on every core, lint (ruff)
# and types (mypy, strict on the core and the prover) included.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "perpnet's tests need: $* (install them with apt-get, as root)" >&2
    exit 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

python=""
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python="$candidate"
    break
  fi
done
if [ -z "$python" ]; then
  echo "perpnet needs Python 3.11 or newer (apt-get install python3 python3-venv)" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
# anvil (the L1 devnode) from npm; npm itself from Debian when missing
if [ ! -x .tools/node_modules/.bin/anvil ]; then
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  npm install --prefix .tools --no-save --no-audit --no-fund --loglevel=error @foundry-rs/anvil@1.7.1
fi

# redis-server for the runtime tests (each test run starts its own on a free loopback port)
command -v redis-server >/dev/null 2>&1 || apt_install redis-server

# ruff and mypy run inside the suite (tests/test_static.py)
# A test whose worker dies (a hang stopped by pytest-timeout, or a crash) runs once
# more; --only-rerun matches no failure message, so a failing test is never rerun.
.venv/bin/pytest -n "$(nproc 2>/dev/null || echo 2)" \
  --reruns 1 --only-rerun '^only a dead worker reruns: this matches no failure$' "$@"

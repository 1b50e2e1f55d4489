#!/usr/bin/env bash
# Installs what the demo and the tests need, on a fresh Debian machine (as root) or an
# already-prepared one: Prometheus (Debian package: prometheus + promtool) and a virtualenv in
# .venv holding exactly requirements/dev.txt (every package pinned and hash-checked: a new
# upstream release cannot change what gets installed; scripts/lock.sh refreshes the lock on
# purpose). Idempotent and quiet when everything is already there; a changed lock rebuilds the
# virtualenv from scratch, so nothing stale survives.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  echo "bootstrap: installing Debian packages: prometheus" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # The package starts a system service on port 9090 where systemd runs; we start our own.
  $SUDO systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
fi

PYTHON=${PYTHON:-python3}

# locked_venv DIR LOCK [EDITABLE]: DIR holds exactly LOCK (plus this project, editable, if asked).
# The virtualenv is made without pip; the machine's pip installs into it (--python), so even pip
# and setuptools inside come from the lock or not at all.
locked_venv() {
  local dir=$1 lock=$2 editable=${3:-}
  local stamp="$dir/.locked-$(cat "$lock" pyproject.toml | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  echo "bootstrap: building $dir from $lock" >&2
  rm -rf "$dir"
  "$PYTHON" -m venv --without-pip "$dir"
  "$PYTHON" -m pip --python "$dir/bin/python" install -q --no-input --require-hashes --no-deps \
    -r "$lock"
  if [ -n "$editable" ]; then
    # The build backend (setuptools, wheel) is in the lock too: no isolated build environment
    # that would fetch whatever is newest.
    "$dir/bin/python" -m pip install -q --no-input --no-deps --no-build-isolation -e .
  fi
  touch "$stamp"
}

locked_venv .venv requirements/dev.txt editable
# checkov (tests only: scripts/test.sh passes --with-checkov) pins old cachetools/packaging that
# our runtime dependencies outgrew, so it lives in a virtualenv of its own; scripts/test.sh puts
# it on PATH after .venv.
if [ "${1:-}" = "--with-checkov" ]; then
  locked_venv .tools/checkov requirements/checkov.txt
fi

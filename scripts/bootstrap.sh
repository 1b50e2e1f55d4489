#!/usr/bin/env bash
# Installs what the demo and the tests need, on a fresh Debian machine (as root) or
# an already-prepared one: Prometheus (Debian package: prometheus + promtool) and a
# virtualenv in .venv with the project and its test tools. Idempotent and quiet
# when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: prometheus" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # The package starts a system service on port 9090 where systemd runs; we start our own.
  $SUDO systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
fi

PYTHON=${PYTHON:-python3}
stamp=.venv/.bootstrap-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "bootstrap: creating .venv and installing the project with its test tools" >&2
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  rm -f .venv/.bootstrap-*
  touch "$stamp"
fi

# checkov (tests only: scripts/test.sh passes --with-checkov) pins old cachetools/packaging that
# our runtime dependencies outgrew, so it lives in a virtualenv of its own; scripts/test.sh puts
# it on PATH after .venv.
if [ "${1:-}" = "--with-checkov" ] && [ ! -x .tools/checkov/bin/checkov ]; then
  echo "bootstrap: installing checkov into .tools/checkov" >&2
  "$PYTHON" -m venv .tools/checkov
  .tools/checkov/bin/python -m pip install -q --upgrade pip
  .tools/checkov/bin/python -m pip install -q 'checkov==3.3.30'
fi

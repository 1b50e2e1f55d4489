#!/usr/bin/env bash
# All checks and tests, as CI runs them: lint, format, types, architecture, pytest.
# Fails loudly if Prometheus or kubectl is missing (the tests need the real ones).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --with-checkov
export PATH="$PWD/.venv/bin:$PATH:$PWD/.tools/checkov/bin"

echo "== ruff (lint)";    ruff check adapter collectors tests bench
echo "== ruff (format)";  ruff format --check adapter collectors tests bench
echo "== mypy (strict)";  mypy
echo "== import-linter";  lint-imports
echo "== pytest";         pytest -q -p no:cacheprovider "$@"

#!/usr/bin/env bash
# All checks and tests, as CI runs them: lint, format, types, architecture, pytest; then one
# summary line with the counts of each. Every step runs even if an earlier one failed; the exit
# status is non-zero if any did. Fails loudly, before testing anything, if a tool the tests need
# (Prometheus, promtool, kubectl, hadolint, checkov) is missing: those tests never skip.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/api -x`).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --with-checkov || { echo "test.sh: bootstrap failed" >&2; exit 1; }
export PATH="$PWD/.venv/bin:$PATH:$PWD/.tools/checkov/bin"

missing=()
for tool in prometheus promtool kubectl hadolint checkov ruff mypy lint-imports pytest; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: required tools missing: ${missing[*]} (scripts/bootstrap.sh installs them)" >&2
  exit 1
fi

log=$(mktemp -d); trap 'rm -rf "$log"' EXIT
failed=()
# step NAME COMMAND...: runs it with its output shown and kept in $log/NAME.
step() {
  local name=$1; shift
  echo "== $name"
  "$@" 2>&1 | tee "$log/$name"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || failed+=("$name")
  return 0
}
# last_match NAME REGEX: the last line of step NAME's output matching REGEX (empty if none).
last_match() { grep -E "$2" "$log/$1" | tail -n 1; }

files=$(git ls-files -- 'adapter/*.py' 'collectors/*.py' 'tests/*.py' 'bench/*.py' | wc -l)
step lint    ruff check adapter collectors tests bench
step format  ruff format --check adapter collectors tests bench
step types   mypy
step imports lint-imports
step pytest  pytest -q -p no:cacheprovider "$@"

lint=$(last_match lint '^Found [0-9]+ error' | grep -oE '[0-9]+' | head -n 1)
format=$(last_match format 'would be reformatted' | grep -oE '^[0-9]+')
types=$(last_match types '^(Success|Found)')
contracts=$(last_match imports '^Contracts:' | sed -E 's/^Contracts: //; s/\.$//')
tests=$(last_match pytest '^[0-9]+ (passed|failed|error)' | sed -E 's/ in [0-9.]+s.*$//')
echo
echo "summary: lint ${lint:-0} problems in $files files; format ${format:-0} files to reformat;" \
     "types: ${types:-no mypy result}; contracts: ${contracts:-no result};" \
     "pytest: ${tests:-no result}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED steps: ${failed[*]}" >&2
  # pytest's own code (5: no tests collected) when it is the only failure, for .ci/run
  if [ "${failed[*]}" = pytest ]; then exit "$(grep -q 'no tests ran' "$log/pytest" && echo 5 || echo 1)"; fi
  exit 1
fi

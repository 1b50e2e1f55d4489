#!/usr/bin/env bash
# Refreshes the lock files in requirements/ on purpose: the only way a new upstream release
# reaches what a fresh clone, CI or the image installs. Review the diff, run scripts/test.sh,
# and commit the lock files together with whatever needed the change.
#
#   requirements/dev.txt      .venv: the project's runtime and test dependencies, the build tools
#                             of the editable install (pip, setuptools, wheel); every hash
#   requirements/runtime.txt  the image: the runtime closure only, at the same versions as dev.txt
#   requirements/build.txt    the image's build tools (pip, setuptools, wheel), as in dev.txt
#   requirements/checkov.txt  .tools/checkov: checkov, which needs its own virtualenv
#
# Usage: bash scripts/lock.sh                  keep current pins where still allowed
#        bash scripts/lock.sh --upgrade        move everything to the newest allowed release
#        bash scripts/lock.sh --upgrade-package NAME [...]
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9  # the locker itself is pinned too
PYTHON=${PYTHON:-python3}
if [ ! -x .tools/lock/bin/uv ] || [ "$(.tools/lock/bin/uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  "$PYTHON" -m venv .tools/lock
  .tools/lock/bin/python -m pip install -q "uv==$UV_VERSION"
fi
uv=.tools/lock/bin/uv
common=(--generate-hashes --universal --python-version 3.11 --quiet
        --custom-compile-command "bash scripts/lock.sh")
extra=()
for arg in "$@"; do
  case "$arg" in
    --upgrade) extra+=(--upgrade) ;;
    --upgrade-package) extra+=(--upgrade-package) ;;
    *) extra+=("$arg") ;;
  esac
done

"$uv" pip compile pyproject.toml requirements/build.in --all-extras "${common[@]}" "${extra[@]}" \
  -o requirements/dev.txt
# The runtime lock takes its versions from dev.txt: the image runs what the tests ran.
pins=.tools/lock/dev-pins.txt  # a fixed path: it is named in the lock files' annotations
grep -E '^[A-Za-z0-9._-]+==' requirements/dev.txt | sed 's/ .*//' >"$pins"
"$uv" pip compile pyproject.toml "${common[@]}" --constraint "$pins" -o requirements/runtime.txt
"$uv" pip compile requirements/build.in "${common[@]}" --constraint "$pins" -o requirements/build.txt
"$uv" pip compile requirements/checkov.in "${common[@]}" "${extra[@]}" -o requirements/checkov.txt
echo "lock: requirements/{dev,runtime,build,checkov}.txt refreshed; review with git diff" >&2

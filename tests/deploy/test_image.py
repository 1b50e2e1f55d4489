"""The Dockerfile passes hadolint and has the promised shape: it installs the hash-checked
runtime lock (test_lock.py proves that lock is the runtime closure at the tested versions)."""

from __future__ import annotations

import re

from tests.deploy.support import ROOT, run, tool

DOCKERFILE = ROOT / "Dockerfile"


def test_hadolint() -> None:
    result = run([tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def _stages() -> list[list[str]]:
    stages: list[list[str]] = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("FROM "):
            stages.append([])
        if stages and line and not line.startswith("#"):
            stages[-1].append(line)
    return stages


def test_dockerfile_shape() -> None:
    builder, final = _stages()
    text = "\n".join(final)
    build = "\n".join(builder)
    assert "--require-hashes --no-deps -r requirements/build.txt" in build
    assert "--require-hashes --no-deps --prefix=/install -r requirements/runtime.txt" in build
    assert "--no-deps --no-build-isolation --prefix=/install ." in build
    assert "COPY --from=builder /install /usr/local" in text
    assert re.search(r"^USER 1001(:1001)?$", text, re.M)
    assert 'ENTRYPOINT ["inference-metrics-adapter"]' in text
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make|apt-get install)\b", text)
    assert "python:3.11-slim" in DOCKERFILE.read_text()


def test_dockerignore_keeps_the_build_inputs() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    copied = {
        "requirements/runtime.txt",
        "requirements/build.txt",
        "pyproject.toml",
        "README.md",
        "adapter/",
        "collectors/",
    }
    assert "*" in lines
    assert {f"!{name}" for name in copied} <= set(lines)

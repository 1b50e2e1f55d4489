"""The Dockerfile passes hadolint and has the promised shape; constraints.txt pins the runtime
dependency closure, consistently with pyproject's ranges."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.constraints import closure
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
    assert "--constraint constraints.txt" in "\n".join(builder)
    assert "COPY --from=builder /install /usr/local" in text
    assert re.search(r"^USER 1001(:1001)?$", text, re.M)
    assert 'ENTRYPOINT ["inference-metrics-adapter"]' in text
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make|apt-get install)\b", text)
    assert "python:3.11-slim" in DOCKERFILE.read_text()


def test_dockerignore_keeps_the_build_inputs() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    copied = {"constraints.txt", "pyproject.toml", "README.md", "adapter/", "collectors/"}
    assert "*" in lines
    assert {f"!{name}" for name in copied} <= set(lines)


def _constraints() -> dict[str, str]:
    pins = {}
    for raw in (ROOT / "constraints.txt").read_text().splitlines():
        line = raw.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def test_constraints_pin_the_runtime_closure() -> None:
    pins = _constraints()
    needed = closure()
    missing = set(needed) - set(pins)
    assert not missing, (
        f"constraints.txt lacks {sorted(missing)}: run python -m tests.deploy.constraints"
    )
    extra = set(pins) - set(needed)
    assert not extra, f"constraints.txt pins non-runtime packages {sorted(extra)}"
    for name, (_, requirements) in needed.items():
        for req in requirements:
            assert req.specifier.contains(pins[name], prereleases=True), (
                f"{name}=={pins[name]} violates {req}"
            )


def test_constraints_satisfy_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _constraints()
    for text in project["dependencies"]:
        req = Requirement(text)
        assert req.specifier.contains(pins[canonicalize_name(req.name)], prereleases=True), text

"""One lock for everything we install: the virtualenvs the tests run in are exactly the lock,
the image's lock is the runtime closure at the same versions, and every entry is hash-checked."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.constraints import closure
from tests.deploy.locks import read_lock, versions
from tests.deploy.support import ROOT

PROJECT = "inference-metrics-adapter"
INSTALLED_SCRIPT = (
    "import importlib.metadata as m\n"
    "for d in m.distributions(): print(d.metadata['Name'] + '==' + d.version)"
)


def _installed(python: str) -> dict[str, str]:
    """name -> version of every distribution in the environment of ``python``, this project aside."""
    out = subprocess.run(
        [python, "-I", "-c", INSTALLED_SCRIPT], capture_output=True, text=True, check=True
    ).stdout
    found: dict[str, str] = {}
    for line in out.split():
        name, version = line.split("==")
        found[canonicalize_name(name)] = version
    found.pop(PROJECT, None)
    return found


def test_the_test_virtualenv_is_exactly_the_dev_lock() -> None:
    # -I: the interpreter's own site-packages only, not the checkout on sys.path
    assert _installed(sys.executable) == versions("dev")


def test_the_checkov_virtualenv_is_exactly_its_lock() -> None:
    python = ROOT / ".tools" / "checkov" / "bin" / "python"
    assert python.exists(), "run scripts/bootstrap.sh --with-checkov (scripts/test.sh does)"
    assert _installed(str(python)) == versions("checkov")


@pytest.mark.parametrize("lock", ["dev", "runtime", "build", "checkov"])
def test_every_entry_is_pinned_with_hashes(lock: str) -> None:
    pins = read_lock(lock)
    assert pins
    for pin in pins:
        assert pin.hashes, f"{pin.name} has no --hash in requirements/{lock}.txt"
        assert all(h.startswith("sha256:") and len(h) == 71 for h in pin.hashes), pin


def test_the_image_lock_is_the_runtime_closure_at_the_tested_versions() -> None:
    runtime, dev = versions("runtime"), versions("dev")
    needed = closure()  # from the installed metadata of pyproject's [project] dependencies
    assert set(runtime) == set(needed)
    assert {name: dev[name] for name in runtime} == runtime
    for name, (_, requirements) in needed.items():
        for req in requirements:
            assert req.specifier.contains(runtime[name], prereleases=True), (
                f"{name}=={runtime[name]} violates {req}"
            )


def test_the_image_build_tools_are_the_tested_ones() -> None:
    build, dev = versions("build"), versions("dev")
    assert set(build) == {"packaging", "pip", "setuptools", "wheel"}  # wheel needs packaging
    assert {name: dev[name] for name in build} == build


def test_the_dev_lock_satisfies_every_requirement_of_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements.extend(extra)
    build = (ROOT / "requirements" / "build.in").read_text().splitlines()
    requirements.extend(line for line in build if line and not line.startswith("#"))
    dev = versions("dev")
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in dev, f"{name} is not locked: run bash scripts/lock.sh"
        assert req.specifier.contains(dev[name], prereleases=True), (
            f"requirements/dev.txt pins {name}=={dev[name]}, pyproject wants {text}"
        )


def test_the_project_itself_is_installed_from_this_checkout() -> None:
    dist = md.distribution(PROJECT)
    assert (
        dist.version == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    )

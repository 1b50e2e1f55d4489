"""The runtime dependency closure of the project, from what is installed.

The project's [project] dependencies and, recursively, their requirements (markers evaluated,
extras followed), nothing from the test extra: what requirements/runtime.txt must pin
(test_lock.py). ``.venv/bin/python -m tests.deploy.constraints`` prints it.
"""

from __future__ import annotations

import importlib.metadata as md
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def runtime_requirements() -> list[Requirement]:
    """pyproject.toml's [project] dependencies (the file, not the possibly stale installed metadata)."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def closure() -> dict[str, tuple[str, list[Requirement]]]:
    """name -> (installed version, the requirements on it found in the closure)."""
    found: dict[str, tuple[str, list[Requirement]]] = {}
    extras: dict[str, set[str]] = {}
    todo = [r for r in runtime_requirements() if not r.marker or r.marker.evaluate({"extra": ""})]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        dist = md.distribution(req.name)
        known = extras.setdefault(name, set())
        new = name not in found or not set(req.extras) <= known
        found.setdefault(name, (dist.version, []))[1].append(req)
        if not new:
            continue
        known.update(req.extras)
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker and not any(sub.marker.evaluate({"extra": e}) for e in known | {""}):
                continue
            todo.append(sub)
    return found


def pins() -> list[str]:
    return [f"{name}=={version}" for name, (version, _) in sorted(closure().items())]


if __name__ == "__main__":
    print("\n".join(pins()))

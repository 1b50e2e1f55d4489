"""The lock files in requirements/, read as pins: name -> version for this platform.

``scripts/lock.sh`` writes them (uv, ``--generate-hashes --universal``); entries may carry an
environment marker (``colorama==0.4.6 ; sys_platform == 'win32'``), evaluated here for the
running interpreter, as pip does when it installs the lock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements"


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: tuple[str, ...]
    applies: bool  # the marker holds on this platform


def read_lock(name: str) -> list[Pin]:
    """Every entry of ``requirements/<name>.txt``; a name may repeat under exclusive markers."""
    text = (REQUIREMENTS / f"{name}.txt").read_text()
    pins: list[Pin] = []
    # An entry is its requirement line plus its backslash-continued --hash lines.
    for entry in re.split(r"\n(?=[A-Za-z0-9])", text):
        lines = [line for line in entry.splitlines() if not line.lstrip().startswith("#")]
        if not lines:
            continue
        joined = " ".join(line.rstrip("\\").strip() for line in lines)
        requirement, *hashes = joined.split(" --hash=")
        req = Requirement(requirement)
        (spec,) = req.specifier
        assert spec.operator == "==", requirement
        name_ = canonicalize_name(req.name)
        applies = req.marker is None or req.marker.evaluate()
        pins.append(Pin(name_, spec.version, tuple(h.strip() for h in hashes), applies))
    return pins


def versions(name: str) -> dict[str, str]:
    """The pins of ``requirements/<name>.txt`` that apply on this platform."""
    pins = [pin for pin in read_lock(name) if pin.applies]
    found = {pin.name: pin.version for pin in pins}
    assert len(found) == len(pins), f"requirements/{name}.txt pins a name twice for this platform"
    return found

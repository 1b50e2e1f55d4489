"""checkov's Kubernetes checks pass on every overlay, the examples, and the base with every
component at once (one checkov run per rendering).

Exceptions live next to the object (``checkov.io/skip#`` annotations with the reason). Two
findings concern the colleague-owned RBAC files deploy/base/rbac-metrics-reader*.yaml and are
accepted here instead, with their reasons, rather than by editing those files.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.support import ALL_COMPONENTS, OVERLAYS, rendered_text, run, tool

# Each component is also validated alone (test_manifests); checkov, slow, sees them all at once.
SCANNED = (*OVERLAYS, "examples", ALL_COMPONENTS)

# (check id, resource as checkov names it) -> why it is accepted.
ACCEPTED = {
    ("CKV_K8S_49", "ClusterRole.default.inference-metrics-adapter:metrics-reader"):
        "resources: ['*'] only within apiGroups custom.metrics.k8s.io: the metric resources are "
        "open-ended (every group-resource the catalogue serves), and the verb is only get",
    ("CKV2_K8S_5", "ClusterRoleBinding.default.inference-metrics-adapter:hpa-controller"):
        "checkov reads the wildcard resource of inference-metrics-adapter:metrics-reader as 'all "
        "secrets' without "
        "looking at its apiGroup (custom.metrics.k8s.io): no Secret is reachable",
}  # fmt: skip


@functools.cache
def _scan(name: str, workdir: Path) -> dict[str, Any]:
    path = workdir / f"{name.replace('/', '-')}.yaml"
    path.write_text(rendered_text(name))
    result = run(
        [tool("checkov"), "--quiet", "--compact", "--skip-download", "--framework", "kubernetes",
         "--output", "json", "-f", str(path)],
        timeout=110,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr[-3000:]
    report = json.loads(result.stdout)
    return report if isinstance(report, dict) else {"results": {"failed_checks": []}}


@pytest.mark.parametrize("name", SCANNED)
def test_checkov(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    report = _scan(name, tmp_path_factory.mktemp("checkov"))
    failed = [
        (c["check_id"], c["resource"], c["check_name"])
        for c in report["results"]["failed_checks"]
        if (c["check_id"], c["resource"]) not in ACCEPTED
    ]
    assert not failed, "\n".join(f"{i} {r}: {n}" for i, r, n in failed)
    skipped = report["results"].get("skipped_checks", [])
    assert all(c.get("suppress_comment") for c in skipped)

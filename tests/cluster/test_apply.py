"""deploy/ against a real API server: the base applied server-side (the session installs it), and
every overlay, every component and all components at once accepted by a server-side dry run
(admission, defaulting, field validation, Pod Security), not only schema validation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cluster.conftest import ADAPTER_NS, Cluster, wait_for
from tests.cluster.controlplane import ApiError
from tests.deploy.support import (
    ALL_COMPONENTS,
    COMPONENTS,
    DEPLOY,
    find,
    kustomization_for,
    kustomize_text,
    render,
)

COLLECTOR_NS = "inference-metrics-gpu"
# Objects the session changed after applying the base (the APIServices and their Service point
# at the adapter on localhost); everything else is as deploy/base rendered it.
REPOINTED = {("Service", "inference-metrics-adapter"), ("APIService", "v1beta1.custom.metrics.k8s.io"),
             ("APIService", "v1beta2.custom.metrics.k8s.io")}  # fmt: skip


def _path(doc: dict[str, Any]) -> str:
    group, _, version = doc["apiVersion"].rpartition("/")
    plural = {
        "NetworkPolicy": "networkpolicies", "PodDisruptionBudget": "poddisruptionbudgets",
        "APIService": "apiservices",
    }.get(doc["kind"], doc["kind"].lower() + "s")  # fmt: skip
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    namespace = doc["metadata"].get("namespace")
    scope = f"/namespaces/{namespace}" if namespace else ""
    return f"{prefix}{scope}/{plural}/{doc['metadata']['name']}"


def test_every_object_of_the_base_exists_as_applied(cluster: Cluster) -> None:
    docs = render("base")
    assert len(docs) > 25
    for doc in docs:
        live = cluster.plane.request("GET", _path(doc))
        assert live["kind"] == doc["kind"]
        if (doc["kind"], doc["metadata"]["name"]) in REPOINTED:
            continue
        for key, value in doc["metadata"].get("labels", {}).items():
            assert live["metadata"]["labels"][key] == value, (doc["kind"], key)
    namespace = cluster.plane.request("GET", f"/api/v1/namespaces/{ADAPTER_NS}")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_pod_security_admits_the_adapter_in_restricted_and_the_collector_only_in_its_namespace(
    cluster: Cluster,
) -> None:
    docs = render("base")
    plane = cluster.plane

    def create(namespace: str, kind: str, name: str) -> tuple[int, str]:
        template = find(docs, kind, name)["spec"]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"generateName": f"{name}-psa-", "labels": template["metadata"]["labels"]},
               "spec": template["spec"]}  # fmt: skip
        try:
            plane.request("POST", f"/api/v1/namespaces/{namespace}/pods?dryRun=All", pod)
        except ApiError as e:
            return e.status, e.body
        return 201, ""

    assert create(ADAPTER_NS, "Deployment", "inference-metrics-adapter") == (201, "")
    assert create(COLLECTOR_NS, "DaemonSet", "gpu-collector") == (201, "")
    status, body = create(ADAPTER_NS, "DaemonSet", "gpu-collector")
    assert status == 403
    assert 'violates PodSecurity "restricted:' in body, body
    # And the ReplicaSet controller really created the adapter's pods (Pending: no kubelet).
    wait_for(
        "the adapter Deployment's two pods",
        lambda: (
            len(plane.pods(ADAPTER_NS, "app.kubernetes.io/name=inference-metrics-adapter")) == 2
        ),
        120,
    )


RENDERED = ("overlays/example", "overlays/shared-gpu", *(f"components/{c}" for c in COMPONENTS),
            ALL_COMPONENTS)  # fmt: skip


@pytest.mark.parametrize("name", RENDERED)
def test_server_side_dry_run_accepts(cluster: Cluster, name: str) -> None:
    kustomization = kustomization_for(name)
    if kustomization is None:
        result = cluster.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-k",
            str(DEPLOY / name),
        )
    else:
        result = cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-",
            stdin=kustomize_text(kustomization),
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    applied = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(applied) == len(render(name)), result.stdout
    assert all("(server dry run)" in line for line in applied), applied[:3]

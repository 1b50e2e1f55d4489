"""A first install works: one image setting, settings in one place, switches as components,
names of our own, Pod Security per namespace, GPU node selection per platform, NetworkPolicies
that follow the settings and work with NodeLocal DNSCache, monitors Prometheus picks up.

Everything here is checked on rendered manifests (``kubectl kustomize``); tests/cluster applies
the same renderings to a real API server where the binaries exist.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from adapter import cli as adapter_cli
from tests.deploy.support import (
    ALL_COMPONENTS,
    COMPONENTS,
    DEPLOY,
    OVERLAYS,
    RENDERINGS,
    expanded_args,
    find,
    kubelet_expand,
    kustomize_text,
    render,
)

ADAPTER_NS = "inference-metrics"
COLLECTOR_NS = "inference-metrics-gpu"
SETTINGS = "inference-metrics-adapter-settings"
IMAGE_NAME = "ghcr.io/inference-metrics-adapter/inference-metrics-adapter"
IMAGE = f"{IMAGE_NAME}:0.1.0"

Docs = tuple[dict[str, Any], ...]


def _docs(text: str) -> Docs:
    return tuple(d for d in yaml.safe_load_all(text) if d)


def _pod(docs: Docs, kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = find(docs, kind, name)["spec"]["template"]["spec"]
    return spec


def _adapter(docs: Docs) -> dict[str, Any]:
    container: dict[str, Any]
    (container,) = _pod(docs, "Deployment", "inference-metrics-adapter")["containers"]
    return container


def _collector(docs: Docs) -> dict[str, Any]:
    container: dict[str, Any]
    (container,) = _pod(docs, "DaemonSet", "gpu-collector")["containers"]
    return container


def _adapter_flags(docs: Docs) -> Any:
    return adapter_cli.parser().parse_args(expanded_args(docs, _adapter(docs)))


def _settings(docs: Docs) -> dict[str, str]:
    (configmap,) = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(f"{SETTINGS}-")
    ]
    data: dict[str, str] = configmap["data"]
    return data


def _containers(docs: Docs) -> list[dict[str, Any]]:
    return [
        c
        for d in docs
        if d["kind"] in {"Deployment", "DaemonSet"}
        for c in d["spec"]["template"]["spec"]["containers"]
    ]


def test_kubelet_expand_follows_the_kubelet() -> None:
    env = {"A": "x", "B_2": "y"}
    assert kubelet_expand("--a=$(A) --b=$(B_2)", env) == "--a=x --b=y"
    assert kubelet_expand("$$(A) $(MISSING) $(A", env) == "$(A) $(MISSING) $(A"


# The image -------------------------------------------------------------------------------------


def test_base_files_name_the_image_only_through_kustomize_images() -> None:
    """Both workloads carry the placeholder name; `images:` alone decides the real one."""
    for path in (DEPLOY / "base").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] in {"Deployment", "DaemonSet"}:
                (container,) = doc["spec"]["template"]["spec"]["containers"]
                assert container["image"] == IMAGE_NAME, path.name
    base = yaml.safe_load((DEPLOY / "base" / "kustomization.yaml").read_text())
    assert base["images"] == [{"name": IMAGE_NAME, "newTag": "0.1.0"}]
    for name in RENDERINGS:
        if name not in {"examples", "overlays/example"}:
            assert {c["image"] for c in _containers(render(name))} == {IMAGE}, name
    example = {c["image"] for c in _containers(render("overlays/example"))}
    assert example == {"registry.example.com/ml/inference-metrics-adapter:0.1.0"}


def test_one_images_entry_in_an_overlay_sets_both_workloads() -> None:
    docs = _docs(
        kustomize_text(
            {
                "resources": ["base"],
                "images": [
                    {
                        "name": IMAGE_NAME,
                        "newName": "registry.example.com/ml/ima",
                        "digest": "sha256:" + "ab" * 32,
                    }
                ],
            }
        )
    )
    want = "registry.example.com/ml/ima@sha256:" + "ab" * 32
    assert _adapter(docs)["image"] == want
    assert _collector(docs)["image"] == want
    # A locally loaded image (kind load, a node-local registry) is used without a pull.
    assert {c["imagePullPolicy"] for c in _containers(docs)} == {"IfNotPresent"}


def _readme_section(heading: str) -> str:
    """deploy/README.md from ``heading`` to the next ``## `` heading."""
    readme = (DEPLOY.parent / "README.md").read_text()
    section = readme[readme.index(heading) :]
    return section[: section.index("\n## ")]


def test_readme_says_how_to_build_and_push_the_image() -> None:
    section = _readme_section("### The image")
    for needle in (
        "docker build -t",
        "docker push",
        "podman build",
        "docker buildx build --platform linux/amd64,linux/arm64",
        "--push",
        f"kustomize edit set image {IMAGE_NAME}=",
    ):
        assert needle in section, needle


# Settings in one place -------------------------------------------------------------------------


def test_no_patch_addresses_a_list_item_by_index_except_the_single_container() -> None:
    """Overlays and components append (`/-`) or name fields; `args/4`-style patches are gone."""
    for path in DEPLOY.rglob("*.yaml"):
        text = path.read_text()
        for m in re.finditer(r"path: (\S+)", text):
            segments = m.group(1).split("/")
            numbered = [
                (segments[i - 1], s) for i, s in enumerate(segments) if s.isdigit() and i > 0
            ]
            for parent, index in numbered:
                assert (parent, index) in {("containers", "0"), ("endpoints", "0")}, (
                    f"{path.relative_to(DEPLOY)}: {m.group(1)}"
                )


def test_adapter_settings_come_from_the_settings_configmap() -> None:
    docs = render("base")
    container = _adapter(docs)
    assert container["envFrom"] == [{"configMapRef": {"name": _settings_name(docs)}}]
    assert "--prometheus-url=$(PROMETHEUS_URL)" in container["args"]
    assert "--log-level=$(LOG_LEVEL)" in container["args"]
    assert not any("http" in arg for arg in container["args"])
    assert _settings(docs) == {
        "PROMETHEUS_URL": "http://prometheus-operated.monitoring.svc:9090",
        "PROMETHEUS_NAMESPACE": "monitoring",
        "PROMETHEUS_PORT": "9090",
        "LOG_LEVEL": "info",
    }


def _settings_name(docs: Docs) -> str:
    (name,) = [
        d["metadata"]["name"]
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(f"{SETTINGS}-")
    ]
    return str(name)


THANOS = {
    "PROMETHEUS_URL": "http://thanos-query.observability.svc:10902",
    "PROMETHEUS_NAMESPACE": "observability",
    "PROMETHEUS_PORT": "10902",
    "LOG_LEVEL": "debug",
}


def _overlay_with(settings: dict[str, str], components: list[str]) -> Docs:
    env = "".join(f"{k}={v}\n" for k, v in settings.items())
    return _docs(
        kustomize_text(
            {
                "resources": ["base"],
                "configMapGenerator": [
                    {
                        "name": SETTINGS,
                        "namespace": ADAPTER_NS,
                        "behavior": "merge",
                        "envs": ["settings.env"],
                    }
                ],
                "components": components,
                "files": {"settings.env": env},
            }
        )
    )


def _prometheus_egress(docs: Docs) -> dict[str, Any]:
    policy = find(docs, "NetworkPolicy", "inference-metrics-adapter")
    rule: dict[str, Any] = policy["spec"]["egress"][0]
    return rule


def _collector_prometheus_peer(docs: Docs) -> str:
    policy = find(docs, "NetworkPolicy", "gpu-collector")
    peer = policy["spec"]["ingress"][0]["from"][0]
    assert set(peer) == {"namespaceSelector"}
    return str(peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])


def test_an_overlay_sets_prometheus_url_namespace_and_port_in_one_file() -> None:
    docs = _overlay_with(THANOS, ["components/settings"])
    flags = _adapter_flags(docs)
    assert flags.prometheus_url == "http://thanos-query.observability.svc:10902"
    assert flags.log_level == "debug"
    assert _prometheus_egress(docs) == {
        "to": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}
        ],
        "ports": [{"port": 10902, "protocol": "TCP"}],  # an int: a string would be a port name
    }
    assert _collector_prometheus_peer(docs) == "observability"
    # The Deployment follows the merged ConfigMap's new hashed name: a change rolls the pods.
    assert _adapter(docs)["envFrom"][0]["configMapRef"]["name"] == _settings_name(docs)
    assert _settings_name(docs) != _settings_name(render("base"))


def test_without_the_settings_component_the_policies_would_keep_the_base_values() -> None:
    """Why overlays list components/settings: the base's copy ran before the overlay's merge."""
    docs = _overlay_with(THANOS, [])
    assert _prometheus_egress(docs)["ports"] == [{"port": 9090, "protocol": "TCP"}]
    for name in ("overlays/example",):
        kustomization = yaml.safe_load((DEPLOY / name / "kustomization.yaml").read_text())
        assert kustomization["components"][-1] == "../../components/settings", name
        assert kustomization["configMapGenerator"][0]["behavior"] == "merge"


def test_base_policies_match_the_base_settings() -> None:
    for name in RENDERINGS:
        if name == "examples":
            continue
        docs = render(name)
        settings = _settings(docs)
        egress = _prometheus_egress(docs)
        peer = egress["to"][0]["namespaceSelector"]["matchLabels"]
        assert peer == {"kubernetes.io/metadata.name": settings["PROMETHEUS_NAMESPACE"]}, name
        assert egress["ports"] == [{"port": int(settings["PROMETHEUS_PORT"]), "protocol": "TCP"}]
        assert _collector_prometheus_peer(docs) == settings["PROMETHEUS_NAMESPACE"], name


# NetworkPolicies -------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["inference-metrics-adapter", "gpu-collector"])
def test_dns_egress_reaches_nodelocal_dnscache(policy: str) -> None:
    """DNS is allowed to any address on port 53: NodeLocal DNSCache answers on a node-local
    link-local address (169.254.20.10) that no pod or namespace selector matches."""
    egress = find(render("base"), "NetworkPolicy", policy)["spec"]["egress"]
    dns = [rule for rule in egress if {p["port"] for p in rule["ports"]} == {53}]
    assert dns == [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]


def test_adapter_reaches_the_collectors_in_their_namespace() -> None:
    egress = find(render("base"), "NetworkPolicy", "inference-metrics-adapter")["spec"]["egress"]
    assert {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": COLLECTOR_NS}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "gpu-collector"}},
            }
        ],
        "ports": [{"port": 9400, "protocol": "TCP"}],
    } in egress
    ingress = find(render("base"), "NetworkPolicy", "gpu-collector")["spec"]["ingress"]
    assert ingress[0]["from"][1] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ADAPTER_NS}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "inference-metrics-adapter"}},
    }


# Names -----------------------------------------------------------------------------------------

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "APIService"}
# Cluster-scoped names that prometheus-adapter's chart and kube-prometheus create.
THEIRS = {
    "hpa-controller-custom-metrics",
    "custom-metrics-reader",
    "custom-metrics-server-resources",
    "custom-metrics-resource-reader",
    "custom-metrics:system:auth-delegator",
    "custom-metrics-auth-reader",
    "prometheus-adapter",
    "prometheus-adapter-server-resources",
    "prometheus-adapter-resource-reader",
    "prometheus-adapter-hpa-controller",
    "prometheus-adapter:system:auth-delegator",
    "resource-metrics:system:auth-delegator",
    "resource-metrics-server-resources",
    "system:aggregated-metrics-reader",
    "prometheus-k8s",
    "monitoring",
    "custom-metrics",
}


def test_cluster_scoped_names_are_ours() -> None:
    for name in RENDERINGS:
        if name == "examples":
            continue
        for doc in render(name):
            if doc["kind"] not in CLUSTER_SCOPED:
                continue
            object_name = doc["metadata"]["name"]
            assert object_name not in THEIRS, (name, object_name)
            if doc["kind"] == "APIService":
                # Fixed by the API: "Replacing prometheus-adapter" says how to take them over.
                assert object_name in {
                    "v1beta1.custom.metrics.k8s.io",
                    "v1beta2.custom.metrics.k8s.io",
                }
            elif doc["kind"] == "Namespace":
                assert object_name in {ADAPTER_NS, COLLECTOR_NS}
            else:
                assert object_name.startswith("inference-metrics-adapter:"), (name, object_name)
        # Objects we create in other people's namespaces carry our name too.
        for doc in render(name):
            namespace = doc["metadata"].get("namespace")
            if namespace not in {None, ADAPTER_NS, COLLECTOR_NS}:
                assert doc["metadata"]["name"].startswith("inference-metrics-adapter"), doc


def test_readme_explains_replacing_prometheus_adapter() -> None:
    section = _readme_section("## Replacing prometheus-adapter")
    for needle in (
        "kubectl get apiservice v1beta1.custom.metrics.k8s.io",
        "kubectl apply --server-side --force-conflicts -k",
        "--force-conflicts",
        "Roll back",
        "hpa-controller-custom-metrics",
    ):
        assert needle in section, needle


# Pod Security and namespaces --------------------------------------------------------------------


def _namespaces(docs: Docs) -> dict[str, dict[str, str]]:
    return {
        d["metadata"]["name"]: d["metadata"]["labels"] for d in docs if d["kind"] == "Namespace"
    }


def test_adapter_namespace_is_restricted_and_only_the_collector_is_privileged() -> None:
    for name in (*OVERLAYS, *(f"components/{c}" for c in COMPONENTS)):
        docs = render(name)
        labels = _namespaces(docs)
        want = "privileged" if name == "components/host-network" else "restricted"
        assert labels[ADAPTER_NS]["pod-security.kubernetes.io/enforce"] == want, name
        assert labels[COLLECTOR_NS]["pod-security.kubernetes.io/enforce"] == "privileged"
        workloads = {
            (d["kind"], d["metadata"]["name"]): d["metadata"]["namespace"]
            for d in docs
            if d["kind"] in {"Deployment", "DaemonSet"}
        }
        assert workloads == {
            ("Deployment", "inference-metrics-adapter"): ADAPTER_NS,
            ("DaemonSet", "gpu-collector"): COLLECTOR_NS,
        }
        # The collector's identity lives with it.
        binding = find(
            docs, "ClusterRoleBinding", "inference-metrics-adapter:gpu-collector-pod-reader"
        )
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "gpu-collector", "namespace": COLLECTOR_NS}
        ]
        assert (
            find(docs, "ServiceAccount", "gpu-collector")["metadata"]["namespace"] == COLLECTOR_NS
        )


def _meets_restricted(pod: dict[str, Any]) -> list[str]:
    """Pod Security Standards "restricted" (v1.28 rules), for what our pods can set."""
    problems = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            problems.append(key)
    if any("hostPath" in v for v in pod.get("volumes", [])):
        problems.append("hostPath")
    pod_sc = pod.get("securityContext", {})
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        if sc.get("privileged"):
            problems.append("privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append("allowPrivilegeEscalation")
        if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get(
            "add"
        ):
            problems.append("capabilities")
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            problems.append("runAsNonRoot")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append("runAsUser 0")
        profile = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if profile not in {"RuntimeDefault", "Localhost"}:
            problems.append("seccompProfile")
    return problems


def test_the_adapter_pod_meets_restricted_in_every_rendering() -> None:
    for name in (*OVERLAYS, *(f"components/{c}" for c in COMPONENTS)):
        pod = _pod(render(name), "Deployment", "inference-metrics-adapter")
        want = ["hostNetwork"] if name == "components/host-network" else []
        assert _meets_restricted(pod) == want, name


def test_the_check_itself_sees_the_collectors_needs() -> None:
    assert set(_meets_restricted(_pod(render("base"), "DaemonSet", "gpu-collector"))) == {
        "hostPath",
        "runAsNonRoot",
        "runAsUser 0",
    }


# GPU node selection -----------------------------------------------------------------------------


def _node_terms(docs: Docs) -> list[dict[str, Any]]:
    affinity = _pod(docs, "DaemonSet", "gpu-collector")["affinity"]["nodeAffinity"]
    terms: list[dict[str, Any]] = affinity["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    return terms


GFD = {
    "matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]
}
GKE = {"matchExpressions": [{"key": "cloud.google.com/gke-accelerator", "operator": "Exists"}]}
AKS = {
    "matchExpressions": [
        {"key": "kubernetes.azure.com/accelerator", "operator": "In", "values": ["nvidia"]}
    ]
}


def test_collector_node_selection_per_platform() -> None:
    assert _node_terms(render("base")) == [GFD]
    assert _node_terms(render("components/gke")) == [GFD, GKE]
    assert _node_terms(render("components/aks")) == [GFD, AKS]
    assert _node_terms(render(ALL_COMPONENTS)) == [GFD, AKS, GKE]
    assert "nodeSelector" not in _pod(render("base"), "DaemonSet", "gpu-collector")
    tolerations = _pod(render("components/aks"), "DaemonSet", "gpu-collector")["tolerations"]
    assert tolerations == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
    ]


def test_gke_component_mounts_the_driver_where_gke_installs_it() -> None:
    docs = render("components/gke")
    pod = _pod(docs, "DaemonSet", "gpu-collector")
    container = _collector(docs)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["nvidia-install-dir"]["hostPath"] == {
        "path": "/home/kubernetes/bin/nvidia",
        "type": "Directory",
    }
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["nvidia-install-dir"] == {
        "name": "nvidia-install-dir",
        "mountPath": "/usr/local/nvidia",
        "readOnly": True,
    }
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LD_LIBRARY_PATH"] == "/usr/local/nvidia/lib64"
    assert container["securityContext"]["privileged"] is True
    # Only the GKE rendering is privileged.
    assert _collector(render("base"))["securityContext"]["privileged"] is False


# Components ------------------------------------------------------------------------------------

MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def test_every_component_is_rendered_and_documented() -> None:
    assert set(COMPONENTS) == {
        "aks",
        "cert-manager",
        "dcgm-exporter",
        "gke",
        "high-priority",
        "host-network",
        "kube-prometheus",
        "kube-prometheus-stack",
        "settings",
        "shared-gpu",
    }
    readme = (DEPLOY.parent / "README.md").read_text()
    for component in COMPONENTS:
        assert f"`components/{component}`" in readme, component
        # Each changes the base (a component that renders the same is a mistake).
        if component != "settings":
            assert render(f"components/{component}") != render("base"), component


def test_kube_prometheus_stack_component_adds_the_release_label() -> None:
    for name, want in (
        ("base", None),
        ("components/kube-prometheus-stack", "kube-prometheus-stack"),
    ):
        monitors = [d for d in render(name) if d["kind"] in MONITORING_KINDS]
        assert {d["kind"] for d in monitors} == MONITORING_KINDS
        for doc in monitors:
            assert doc["metadata"]["labels"].get("release") == want, (name, doc["kind"])
    # Nothing else is touched.
    others = [
        d for d in render("components/kube-prometheus-stack") if d["kind"] not in MONITORING_KINDS
    ]
    assert others == [d for d in render("base") if d["kind"] not in MONITORING_KINDS]


def test_kube_prometheus_component_lets_prometheus_k8s_discover_both_namespaces() -> None:
    docs = render("components/kube-prometheus")
    for namespace in (ADAPTER_NS, COLLECTOR_NS):
        (role,) = [
            d for d in docs if d["kind"] == "Role" and d["metadata"]["namespace"] == namespace
        ]
        assert role["rules"] == [
            {"apiGroups": [""], "resources": ["services", "endpoints", "pods"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
             "verbs": ["get", "list", "watch"]},
        ]  # fmt: skip
        (binding,) = [
            d
            for d in docs
            if d["kind"] == "RoleBinding" and d["metadata"]["namespace"] == namespace
        ]
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "prometheus-k8s", "namespace": "monitoring"}
        ]


def test_host_network_component() -> None:
    docs = render("components/host-network")
    pod = _pod(docs, "Deployment", "inference-metrics-adapter")
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["affinity"]["podAntiAffinity"] == {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {
                    "matchLabels": {"app.kubernetes.io/name": "inference-metrics-adapter"}
                },
            }
        ]
    }
    assert "hostNetwork" not in _pod(render("base"), "Deployment", "inference-metrics-adapter")


def test_high_priority_component_and_the_quota_gke_needs() -> None:
    base = render("base")
    assert "priorityClassName" not in _pod(base, "Deployment", "inference-metrics-adapter")
    assert "priorityClassName" not in _pod(base, "DaemonSet", "gpu-collector")
    assert not [d for d in base if d["kind"] == "ResourceQuota"]
    docs = render("components/high-priority")
    classes = {
        ADAPTER_NS: _pod(docs, "Deployment", "inference-metrics-adapter")["priorityClassName"],
        COLLECTOR_NS: _pod(docs, "DaemonSet", "gpu-collector")["priorityClassName"],
    }
    assert classes == {ADAPTER_NS: "system-cluster-critical", COLLECTOR_NS: "system-node-critical"}
    quotas = {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "ResourceQuota"}
    assert set(quotas) == {ADAPTER_NS, COLLECTOR_NS}
    for namespace, quota in quotas.items():
        assert quota["spec"]["scopeSelector"] == {
            "matchExpressions": [
                {"scopeName": "PriorityClass", "operator": "In", "values": [classes[namespace]]}
            ]
        }
        assert quota["spec"]["hard"] == {"pods": "1000"}


def test_cert_manager_component_verifies_both_hops() -> None:
    docs = render("components/cert-manager")
    for version in ("v1beta1", "v1beta2"):
        apiservice = find(docs, "APIService", f"{version}.custom.metrics.k8s.io")
        assert "insecureSkipTLSVerify" not in apiservice["spec"]
        assert apiservice["metadata"]["annotations"] == {
            "cert-manager.io/inject-ca-from": f"{ADAPTER_NS}/inference-metrics-adapter-serving"
        }
    flags = _adapter_flags(docs)
    assert str(flags.tls_cert_file) == "/etc/adapter/tls/tls.crt"
    (endpoint,) = find(docs, "ServiceMonitor", "inference-metrics-adapter")["spec"]["endpoints"]
    assert endpoint["tlsConfig"] == {
        "serverName": "inference-metrics-adapter.inference-metrics.svc",
        "ca": {"secret": {"name": "inference-metrics-adapter-tls", "key": "ca.crt"}},
    }


# Monitors --------------------------------------------------------------------------------------


def test_no_deprecated_bearer_token_file_anywhere() -> None:
    for path in DEPLOY.rglob("*.yaml"):
        assert "bearerTokenFile" not in path.read_text(), path


def test_servicemonitor_scrapes_with_a_token_the_adapter_authorizes() -> None:
    docs = render("base")
    (endpoint,) = find(docs, "ServiceMonitor", "inference-metrics-adapter")["spec"]["endpoints"]
    credentials = endpoint["authorization"]["credentials"]
    assert endpoint["authorization"]["type"] == "Bearer"
    secret = find(docs, "Secret", credentials["name"])
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert credentials["key"] == "token"
    account = secret["metadata"]["annotations"]["kubernetes.io/service-account.name"]
    assert find(docs, "ServiceAccount", account)["automountServiceAccountToken"] is False
    binding = find(docs, "ClusterRoleBinding", "inference-metrics-adapter:metrics-scraper")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": ADAPTER_NS}
    ]
    role = find(docs, "ClusterRole", binding["roleRef"]["name"])
    assert role["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]

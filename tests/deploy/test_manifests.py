"""Every manifest and every rendering validates strictly against the Kubernetes schemas, and the
Prometheus Operator objects against the operator's CRD schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.support import (
    CRD_GROUPS,
    DEPLOY,
    KUBERNETES_VERSIONS,
    RENDERINGS,
    manifest_files,
    patch_files,
    render,
)

CRD_DIR = Path("/work/shared/schemas/prometheus-operator")
CRD_FILES = {
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "PodMonitor": "monitoring.coreos.com_podmonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
}


def _validate(doc: dict[str, Any], version: str, where: str) -> None:
    if doc["apiVersion"].startswith(CRD_GROUPS):
        return
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(
            f"{where}: {doc['kind']} {doc['metadata'].get('name')} on {version}: {e.message}"
        )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_manifest_file_is_valid(path: Path, version: str) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        _validate(doc, version, str(path.relative_to(DEPLOY)))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", RENDERINGS)
def test_rendering_is_valid(name: str, version: str) -> None:
    docs = render(name)
    assert docs
    for doc in docs:
        _validate(doc, version, f"kubectl kustomize {name}")


def test_one_object_per_base_file_and_all_listed() -> None:
    base = DEPLOY / "base"
    listed = yaml.safe_load((base / "kustomization.yaml").read_text())["resources"]
    files = sorted(p.name for p in base.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == files
    for name in files:
        assert len(list(yaml.safe_load_all((base / name).read_text()))) == 1, name


def test_patches_are_json_patches_or_partial_objects() -> None:
    for path in patch_files():
        doc = yaml.safe_load(path.read_text())
        assert isinstance(doc, list | dict), path
        if isinstance(doc, list):
            assert all({"op", "path"} <= set(op) for op in doc), path


# Prometheus Operator CRDs ---------------------------------------------------------------------


def _crd_schema(kind: str, version: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRD_DIR / CRD_FILES[kind]).read_text())
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            schema: dict[str, Any] = v["schema"]["openAPIV3Schema"]
            return schema
    raise AssertionError(f"{kind} has no version {version}")


def _unknown_fields(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Fields the API server would prune: structural schemas list every known property."""
    problems = []
    if isinstance(value, dict) and "properties" in schema:
        if (
            not schema.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in schema
        ):
            problems += [f"{path}.{k}" for k in value if k not in schema["properties"]]
        for key, sub in value.items():
            if key in schema["properties"]:
                problems += _unknown_fields(sub, schema["properties"][key], f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += _unknown_fields(item, schema["items"], f"{path}[{i}]")
    return problems


def _operator_objects() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] in CRD_FILES:
                found.append((str(path.relative_to(DEPLOY)), doc))
    for name in RENDERINGS:
        found += [(f"kustomize {name}", d) for d in render(name) if d["kind"] in CRD_FILES]
    return found


def test_prometheus_operator_objects_match_their_crds() -> None:
    objects = _operator_objects()
    kinds = {doc["kind"] for _, doc in objects}
    assert kinds == set(CRD_FILES), kinds
    for where, doc in objects:
        group, _, version = doc["apiVersion"].partition("/")
        assert group == "monitoring.coreos.com", where
        schema = _crd_schema(doc["kind"], version)
        body = {k: v for k, v in doc.items() if k not in {"apiVersion", "kind", "metadata"}}
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(body), key=str)
        assert not errors, f"{where} {doc['kind']}: {errors[0].message} at {list(errors[0].path)}"
        unknown = _unknown_fields(body, schema, doc["kind"])
        assert not unknown, f"{where}: fields unknown to the CRD (pruned): {unknown}"

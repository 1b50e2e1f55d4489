"""Fixtures of the pod-index tests: the fake API server (tests/fakes/fixtures.py)."""

from __future__ import annotations

from tests.fakes.fixtures import (  # noqa: F401  (fixtures, used by name)
    backoff_sleeps,
    fake_kube,
    kube_client,
    kube_state,
    kubeconfig,
    pod_index,
)

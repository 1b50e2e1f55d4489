#!/usr/bin/env bash
# The local demo: real Prometheus and adapter on 127.0.0.1, simulated inference
# pods and GPU nodes, and what `kubectl get --raw` shows for every metric.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/inference-metrics-adapter demo "$@"

# syntax=docker/dockerfile:1
# One image, two programs: `inference-metrics-adapter` (the default ENTRYPOINT) and
# `gpu-collector` (the DaemonSet sets `command: [gpu-collector]`).
#
# Stage 1 installs the project and its dependencies into /install, exactly as locked in
# requirements/runtime.txt (hash-checked; the build tools from requirements/build.txt), so the
# image runs the versions the tests ran (scripts/lock.sh refreshes the locks).
# Every runtime dependency ships manylinux wheels for CPython 3.11, so no compiler is needed in
# either stage; the final stage copies /install only.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements/runtime.txt requirements/build.txt ./requirements/
COPY pyproject.toml README.md ./
COPY adapter ./adapter
COPY collectors ./collectors
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements/build.txt \
    && pip install --no-cache-dir --require-hashes --no-deps --prefix=/install -r requirements/runtime.txt \
    && pip install --no-cache-dir --no-deps --no-build-isolation --prefix=/install .

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="inference-metrics-adapter" \
      org.opencontainers.image.description="custom.metrics.k8s.io for GPU inference (p95 latency, queue depth, GPU utilization) and the gpu-collector node agent" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=builder /install /usr/local
RUN groupadd --system --gid 1001 app \
    && useradd --system --uid 1001 --gid 1001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
USER 1001:1001
EXPOSE 6443 9400
# Kubernetes probes /livez, /readyz (adapter) and /healthz, /readyz (collector); no Docker
# HEALTHCHECK, which Kubernetes ignores anyway.
HEALTHCHECK NONE
ENTRYPOINT ["inference-metrics-adapter"]
CMD ["--help"]

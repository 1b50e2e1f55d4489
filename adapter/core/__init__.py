"""The framework-free core: model, selectors, quantities, catalogue, resolver, ports.

Nothing here imports aiohttp, the Kubernetes client or a Prometheus client
(checked by import-linter), so it is tested with plain values.
"""

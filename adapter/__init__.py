"""inference-metrics-adapter: custom.metrics.k8s.io for GPU inference fleets.

Request path, top to bottom::

    TLS (adapter.api.tls, adapter.api.connections)
        -> adapter.api.middleware (chain: observe -> access log -> errors -> target
           -> budget -> authn/authz, adapter.auth)
        -> adapter.api.handlers (routes and handlers)
        -> adapter.core.resolver (pod index + source snapshots)
        -> adapter.core.quantity -> adapter.api.wire -> JSON

Background work (never on the request path): adapter.kube (one client layer: the
pod index and the trust ConfigMap by list+watch, TokenReview/SubjectAccessReview),
adapter.sources.* (periodic snapshots). adapter.app is the composition root; the
layers are checked by import-linter (pyproject.toml).
"""

__version__ = "0.1.0"

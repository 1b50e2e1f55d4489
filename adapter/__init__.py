"""inference-metrics-adapter: custom.metrics.k8s.io for GPU inference fleets.

Request path, top to bottom::

    TLS -> adapter.api.middleware (chain: observe -> access log -> errors -> target
           -> budget -> authn/authz)
        -> adapter.api.routes -> adapter.api.handlers
        -> adapter.core.resolver (pod index + source snapshots)
        -> adapter.core.quantity -> adapter.api.wire -> JSON

Background work (never on the request path): adapter.kube.podindex (list+watch),
adapter.sources.* (periodic snapshots). adapter.app is the composition root.
"""

__version__ = "0.1.0"

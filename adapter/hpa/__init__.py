"""The HorizontalPodAutoscaler's own arithmetic, as pure functions (no I/O, no framework).

Follows Kubernetes v1.28 ``pkg/controller/podautoscaler``: ``calculator`` is
``replica_calculator.go`` for Pods and Object metrics, ``controller`` is the part
of ``horizontal.go`` that combines metrics, clamps to min/max and applies the
``behavior`` (stabilization windows, scaling policies). ``spec`` reads an
``autoscaling/v2`` HorizontalPodAutoscaler with the API server's defaults.
``explain`` and ``simulate`` use the same code, so they agree with each other and,
case for case, with the controller.
"""

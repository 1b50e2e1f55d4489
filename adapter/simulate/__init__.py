"""``inference-metrics-adapter simulate``: replay a load through the HPA's arithmetic.

``engine`` is pure (a series and an HPA in, a replica curve out), ``series``
reads CSV and Prometheus ranges and writes the result CSV, ``plot`` draws the
PNG (matplotlib, the optional ``[plot]`` extra), ``command`` runs it.
"""

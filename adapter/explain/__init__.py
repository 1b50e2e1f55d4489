"""``inference-metrics-adapter explain``: why a metric is missing, and what the HPA will do.

``report`` is pure (the HPA, its pods and the adapter's explanations in, a
report out); ``cluster`` reads them from the Kubernetes API and the running
adapter; ``command`` runs the subcommand.
"""

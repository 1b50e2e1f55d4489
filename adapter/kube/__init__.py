"""Talking to the Kubernetes API: credentials, our error types, and the pod index.

- ``credentials.connect``: an ``ApiClient`` from ``--kubeconfig`` or in-cluster config.
- ``listwatch``: raw-JSON LIST/WATCH of pods (``PodsAPI`` seam, ``KubePodsAPI``).
- ``pods``: ``pod_from_k8s`` (the only reader of the Pod wire format), ``PodIndex``
  (list+watch) and ``PodsFileIndex`` (``--pods-file``), both ``PodLister``.
- ``errors``: ``KubeError`` and its subclasses; library errors never leave this package.

Nothing here knows the HTTP edge (``adapter.api``) or the composition root.
"""

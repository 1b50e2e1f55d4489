"""Talking to the Kubernetes API: credentials, our error types, list+watch and reviews.

- ``k8s``: the only importer of the ``kubernetes`` library (``KubeClient``; see its docstring).
- ``credentials.connect``: a ``KubeClient`` from ``--kubeconfig`` or in-cluster config.
- ``rest``: one raw-JSON request by resource path (the transport every client shares).
- ``listwatch``: LIST/WATCH of any ``Resource`` (``ListWatchAPI`` seam, ``KubeListWatch``).
- ``reflector``: ``Reflector``, the one list+watch loop (pagination, bookmarks, resume,
  410 relist, ``backoff.Backoff``), feeding a ``ReflectorTarget``.
- ``podinfo`` (``pod_from_k8s``, the only reader of the Pod wire format), ``podstore``,
  ``podindex`` (``PodIndex``: pods by a reflector) and ``podsfile`` (``--pods-file``).
- ``errors``: ``KubeError`` and its subclasses; library errors never leave this package.

Nothing here knows the HTTP edge (``adapter.api``) or the composition root.
"""

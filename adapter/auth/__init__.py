"""Delegated authentication and authorization (protocol.md section 7).

Framework-free: no aiohttp here. The HTTP edge (``adapter.api.middleware``)
turns a request into an :class:`~adapter.auth.authenticator.AuthRequest`, asks
the :class:`~adapter.auth.authenticator.Authenticator` who is calling and an
``Authorizer`` whether they may. Only ``adapter.auth.kube`` talks to the
Kubernetes API (TokenReview, SubjectAccessReview, the trust ConfigMap).
"""

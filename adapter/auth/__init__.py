"""Delegated authentication and authorization (protocol.md section 7).

Framework-free: no aiohttp here. The HTTP edge (``adapter.api.middleware``)
turns a request into an :class:`~adapter.auth.authenticator.AuthRequest`, asks
the :class:`~adapter.auth.authenticator.Authenticator` who is calling and an
``Authorizer`` whether they may. The Kubernetes API calls behind them
(TokenReview, SubjectAccessReview, the trust ConfigMap's list+watch) are
``adapter.kube``'s: auth states what it needs as Protocols (``TokenReviewAPI``,
``SubjectAccessReviewAPI``) and ``adapter.kube.reviews.KubeReviews`` implements
them; ``adapter.kube.configmap.ConfigMapWatch`` feeds
``adapter.auth.trustsources.TrustLoader``. Failures arrive as
``adapter.kube.errors.KubeError``.
"""

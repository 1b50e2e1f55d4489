"""Errors of the authentication layer (never shown to callers as is)."""

from __future__ import annotations


class KubeAuthError(Exception):
    """The Kubernetes API could not answer (transport, HTTP status, malformed body).

    Messages never contain a token or a certificate.
    """

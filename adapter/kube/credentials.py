"""Credentials for the API server: a kubeconfig file, or the pod's service account.

``connect`` is the only function here: it returns a ready
``adapter.kube.k8s.KubeClient`` that the caller owns and must ``close()``.
Every failure becomes :class:`~adapter.kube.errors.KubeConfigError` naming the
source (file and context, or "in-cluster"), with the library error chained.
"""

from __future__ import annotations

import logging

import yaml

from adapter.kube.errors import KubeConfigError
from adapter.kube.k8s import (
    ConfigException,
    Configuration,
    KubeClient,
    load_incluster_config,
    load_kube_config,
)

log = logging.getLogger(__name__)

# What the kubernetes config loaders raise besides ConfigException on a bad file.
_LOAD_ERRORS = (ConfigException, OSError, ValueError, KeyError, TypeError, yaml.YAMLError)


def describe(kubeconfig: str | None, context: str | None = None) -> str:
    """Where credentials come from, for messages and logs."""
    if kubeconfig is None:
        return "the in-cluster service account"
    where = f"kubeconfig {kubeconfig}"
    return f"{where} (context {context})" if context else where


async def connect(kubeconfig: str | None = None, *, context: str | None = None) -> KubeClient:
    """A new ``KubeClient``; the caller closes it.

    ``kubeconfig`` is a kubeconfig path (``--kubeconfig``); None means in-cluster
    (the service account token and CA mounted into the pod). ``context`` picks a
    context other than ``current-context`` and needs a kubeconfig.

    Raises KubeConfigError when the credentials cannot be loaded. Nothing is sent
    to the server here: a wrong address shows up on the first request.
    """
    if kubeconfig is None and context is not None:
        raise KubeConfigError("a kubeconfig context was given without a kubeconfig file")
    configuration = Configuration()
    try:
        if kubeconfig is None:
            load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            # persist_config=False: never write refreshed tokens back into the user's file.
            await load_kube_config(
                config_file=kubeconfig,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except _LOAD_ERRORS as e:
        raise KubeConfigError(f"cannot load {describe(kubeconfig, context)}: {e}") from e
    log.info("Kubernetes API at %s from %s", configuration.host, describe(kubeconfig, context))
    return KubeClient(configuration)

"""How the operator logs in to the Kubernetes API: in a cluster, and from a laptop.

In a cluster the pod's service account is enough (kopf reads its token and CA). Outside one, the
kubeconfig decides, and kubeconfigs of managed clusters rarely hold a token: EKS and GKE write an
``exec`` user (``aws eks get-token``, ``gke-gcloud-auth-plugin``), others an OIDC provider.
kopf's own kubeconfig login reads only tokens, certificates and passwords, so it would connect
without credentials. The ``kubernetes`` client's loader runs exec plugins and auth providers;
kopf's ``login_via_client`` turns what it loaded into kopf's ``ConnectionInfo``. kopf's own
kubeconfig reader stays as the last resort (an operator installed without ``kubernetes``).

An exec plugin's token expires: ``kube.Kube`` logs in again (and so runs the plugin again) when
the API server answers 401.
"""

from __future__ import annotations

import asyncio
import logging

import kopf

logger = logging.getLogger(__name__)


async def log_in(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """Credentials for the API server: service account, else kubeconfig (exec plugins too)."""
    info = kopf.login_with_service_account(settings=settings)
    if info is None:
        # The kubernetes client's loader may run an exec plugin: not in the event loop.
        info = await asyncio.to_thread(_via_kubernetes_client, settings)
    if info is None:
        info = kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no service account token and no kubeconfig found")
    return info


def _via_kubernetes_client(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None:
    try:
        return kopf.login_via_client(logger=logger, settings=settings)
    except kopf.LoginError as err:
        logger.debug("the kubernetes client found no usable kubeconfig: %s", err)
        return None

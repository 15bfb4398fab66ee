"""Which cluster and namespace a resource step talks to.

Order: an explicit ``kubeconfig``/``context`` (tests, multi-cluster use); else
the ``k8s`` step operator of ZenML's active stack (its API client — service
connector, in-cluster or kubeconfig — and its ``kubernetes_namespace``); else
the current kubeconfig context and its namespace; else ``default``. Inside a
pod (a step or hook running on the step operator) without a usable kubeconfig,
the in-cluster service account is used.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config

from ..flavor import FLAVOR_NAME
from ..kube.connection import load_api_client

__all__ = ["Cluster", "connect"]

log = logging.getLogger(__name__)
_SA_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass
class Cluster:
    """An API client plus the namespace used when a step names none."""

    api: client.ApiClient
    namespace: str
    source: str
    kubeconfig: str | None = None
    context: str | None = None

    def recorded(self) -> dict[str, Any]:
        """How to reconnect later (for the clean-up hook): only explicit settings are kept."""
        return {"kubeconfig": self.kubeconfig, "context": self.context}


def _kubeconfig_namespace(kubeconfig: str | None, context: str | None) -> str | None:
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except Exception:  # noqa: BLE001 - no kubeconfig is a normal case here
        return None
    chosen = active
    if context:
        chosen = next((c for c in contexts or [] if c.get("name") == context), None)
    return ((chosen or {}).get("context") or {}).get("namespace")


def _in_pod() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and _SA_TOKEN.is_file()


def _in_cluster(namespace: str | None) -> Cluster:
    api = load_api_client(incluster=True)
    ns = namespace or (_SA_NAMESPACE.read_text().strip() if _SA_NAMESPACE.is_file() else "default")
    return Cluster(api, ns, "in-cluster service account")


def _stack_step_operator() -> Any | None:
    """The active stack's step operator if its flavor is ``k8s``; None without a usable ZenML client."""
    try:
        from zenml.client import Client

        operator = Client().active_stack.step_operator
    except Exception as exc:  # noqa: BLE001 - no ZenML repository/store is fine
        log.debug("no ZenML active stack: %s", exc)
        return None
    if operator is None or getattr(operator, "flavor", None) != FLAVOR_NAME:
        return None
    return operator


def _from_step_operator(operator: Any, namespace: str | None) -> Cluster:
    """The operator's own client (connector, in-cluster or kubeconfig) and namespace."""
    ns = namespace or getattr(operator.config, "kubernetes_namespace", None) or "default"
    return Cluster(operator.api, ns, f"step operator {operator.name!r}")


def connect(
    namespace: str | None = None, *, kubeconfig: str | None = None, context: str | None = None
) -> Cluster:
    """Resolve the cluster and default namespace (see the module docstring for the order)."""
    if kubeconfig or context:
        api = load_api_client(context=context, kubeconfig=kubeconfig)
        ns = namespace or _kubeconfig_namespace(kubeconfig, context) or "default"
        return Cluster(api, ns, f"kubeconfig {kubeconfig or '(default)'}", kubeconfig=kubeconfig, context=context)
    operator = _stack_step_operator()
    if operator is not None:
        try:
            return _from_step_operator(operator, namespace)
        except Exception as exc:  # noqa: BLE001 - fall back inside a pod, else re-raise
            if not _in_pod():
                raise
            log.info("step operator %s's client is not usable here (%s); using the in-cluster account", operator.name, exc)
            return _in_cluster(namespace or getattr(operator.config, "kubernetes_namespace", None))
    try:
        api = load_api_client()
    except Exception:
        if _in_pod():
            return _in_cluster(namespace)
        raise
    ns = namespace or _kubeconfig_namespace(None, None) or "default"
    return Cluster(api, ns, "current kubeconfig context")

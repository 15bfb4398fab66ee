"""k8s-step-operator: a ZenML step operator on Kubernetes, and KFP-style resource, volume and snapshot steps.

``KubernetesStepOperatorSettings`` and ``KubernetesPodSettings`` carry ZenML's names, so that
``from zenml.integrations.kubernetes.flavors import KubernetesStepOperatorSettings`` becomes
``from k8s_step_operator import KubernetesStepOperatorSettings``. They load on first use: the
package itself stays cheap to import.
"""

from typing import Any

__all__ = ["K8sPodSettings", "K8sStepOperatorSettings", "KubernetesPodSettings", "KubernetesStepOperatorSettings"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import settings

        return getattr(settings, name)
    raise AttributeError(f"module 'k8s_step_operator' has no attribute {name!r}")

"""The ``k8s`` step-operator flavor and its component configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Type

from pydantic import Field
from zenml.models import ServiceConnectorRequirements
from zenml.step_operators import BaseStepOperatorConfig, BaseStepOperatorFlavor

from .settings import K8sStepOperatorSettings

if TYPE_CHECKING:
    from .step_operator import K8sStepOperator

FLAVOR_NAME = "k8s"
KUBERNETES_CLUSTER_RESOURCE_TYPE = "kubernetes-cluster"


class K8sStepOperatorConfig(BaseStepOperatorConfig, K8sStepOperatorSettings):
    """Component configuration: where the cluster is, plus defaults for every step setting."""

    kubernetes_namespace: str = Field(
        default="zenml",
        description="Namespace for step pods; a step's `kubernetes_namespace` setting overrides it.",
    )
    kubernetes_context: Optional[str] = Field(
        default=None,
        description="kubeconfig context to use; ignored with a service connector or `incluster`.",
    )
    kubeconfig: Optional[str] = Field(
        default=None,
        description="Path of the kubeconfig file (default: $KUBECONFIG or ~/.kube/config).",
    )
    incluster: bool = Field(
        default=False,
        description="Use the in-cluster service-account configuration (the orchestrator runs in a pod).",
    )
    local: bool = Field(
        default=False,
        description="The cluster's pods can reach this machine's ZenML store and artifact store "
        "(e.g. the bundled local cluster): the component is not remote and needs no remote "
        "artifact store or container registry.",
    )

    @property
    def is_remote(self) -> bool:
        """Remote unless ``local`` says the pods share this machine's stores."""
        return not self.local

    @property
    def is_local(self) -> bool:
        return self.local


class K8sStepOperatorFlavor(BaseStepOperatorFlavor):
    """Runs each step as its own Kubernetes Pod (flavor ``k8s``)."""

    @property
    def name(self) -> str:
        return FLAVOR_NAME

    @property
    def service_connector_requirements(self) -> Optional[ServiceConnectorRequirements]:
        return ServiceConnectorRequirements(resource_type=KUBERNETES_CLUSTER_RESOURCE_TYPE)

    @property
    def docs_url(self) -> Optional[str]:
        return None

    @property
    def sdk_docs_url(self) -> Optional[str]:
        return None

    @property
    def logo_url(self) -> str:
        return "https://public-flavor-logos.s3.eu-central-1.amazonaws.com/step_operator/kubernetes.png"

    @property
    def config_class(self) -> Type[K8sStepOperatorConfig]:
        return K8sStepOperatorConfig

    @property
    def implementation_class(self) -> Type["K8sStepOperator"]:
        from .step_operator import K8sStepOperator

        return K8sStepOperator

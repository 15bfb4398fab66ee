"""Measure 2's ZenML repository: ``python -m k8sbench.zenml_setup ROOT NAMESPACE KUBECONFIG``.

Run with ``ZENML_CONFIG_PATH`` pointing into the bench's tmp dir, so nothing touches
the user's ZenML state. Equivalent CLI (what a user would type)::

    zenml init
    zenml step-operator flavor register k8s_step_operator.flavor.K8sStepOperatorFlavor
    zenml step-operator flavor register k8sbench.subprocess_operator.SubprocessStepOperatorFlavor
    zenml step-operator register bench-k8s --flavor=k8s --kubernetes_namespace=NS --kubeconfig=KC --local=True
    zenml step-operator register bench-builtin --flavor=kubernetes --kubernetes_namespace=NS \
        --kubernetes_context=k8s-step-operator-local \\          # kubeconfig from $KUBECONFIG
        --env ZENML_CONFIG_PATH=<this ZenML config dir>
    zenml step-operator register bench-subprocess --flavor=bench-subprocess
    zenml stack register stack-<op> -o default -a default -s <op>     # one stack per operator

The ``kubernetes`` flavor is ZenML's built-in one: it is in the store even though the
integration's requirement pin (``kubernetes<26``) is not met here, and registering and
instantiating it works without installing anything; its code runs with our client.

Its pods run on this machine's nodes but get only ZenML's step environment and their
image's files, so their ZenML would look for the local artifact store (where the code
archive is) under the default config directory of an empty container. The component's
``environment`` (ZenML puts component env values into every step's environment) gives them
this run's ``ZENML_CONFIG_PATH``, and its ``pod_settings`` mount that directory from the
host -- what our operator's ``local=True`` does by itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

OPERATORS = {
    "k8s": "bench-k8s",
    "builtin": "bench-builtin",
    "subprocess": "bench-subprocess",
}


def _host_dir(path: str) -> dict:
    """Pod settings mounting this machine's ``path`` at the same path: on real nodes a pod sees the ZenML
    config directory (the local store, artifact store and code archive, the steps' timing notes) only
    so -- what our operator's ``local=True`` does by itself."""
    return {
        "volumes": [{"name": "zenml-config", "hostPath": {"path": path, "type": "Directory"}}],
        "volume_mounts": [{"name": "zenml-config", "mountPath": path}],
    }


def main(root: str, namespace: str, kubeconfig: str) -> int:
    from zenml.client import Client
    from zenml.config.global_config import GlobalConfiguration
    from zenml.enums import StackComponentType as T

    from .operators import CONTEXT

    Client.initialize(root=Path(root))
    client = Client()
    client.create_flavor(source="k8s_step_operator.flavor.K8sStepOperatorFlavor", component_type=T.STEP_OPERATOR)
    client.create_flavor(
        source="k8sbench.subprocess_operator.SubprocessStepOperatorFlavor", component_type=T.STEP_OPERATOR
    )
    configs = {
        "k8s": ("k8s", {"kubernetes_namespace": namespace, "kubeconfig": kubeconfig, "local": True}),
        "builtin": ("kubernetes", {"kubernetes_namespace": namespace, "kubernetes_context": CONTEXT,
                                   "pod_settings": _host_dir(GlobalConfiguration().config_directory)}),
        "subprocess": ("bench-subprocess", {}),
    }
    environments = {"builtin": {"ZENML_CONFIG_PATH": GlobalConfiguration().config_directory}}
    for kind, name in OPERATORS.items():
        flavor, configuration = configs[kind]
        client.create_stack_component(
            name=name,
            flavor=flavor,
            component_type=T.STEP_OPERATOR,
            configuration=configuration,
            environment=environments.get(kind),
        )
        client.create_stack(
            name=f"stack-{name}",
            components={T.ORCHESTRATOR: "default", T.ARTIFACT_STORE: "default", T.STEP_OPERATOR: name},
        )
    print("ZENML-SETUP-OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

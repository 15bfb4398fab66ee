"""Register the ``k8s`` flavor, a step operator component and a stack in ZenML (idempotent).

Each function takes a ZenML ``Client``, returns one line saying what it did, and
raises :class:`RegistrationConflict` when something of the same name exists in
a form it must not overwrite.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

FLAVOR_SOURCE = "k8s_step_operator.flavor.K8sStepOperatorFlavor"


class RegistrationConflict(RuntimeError):
    """A flavor or component of that name is already registered differently."""


def _flavor_request() -> Any:
    """The flavor request with the clean dotted source, whatever ZenML's source root is."""
    from zenml.enums import StackComponentType
    from zenml.stack.flavor import validate_flavor_source
    from zenml.utils import source_utils

    import k8s_step_operator

    package_parent = str(Path(k8s_step_operator.__file__).resolve().parent.parent)
    previous = os.environ.get("ZENML_CUSTOM_SOURCE_ROOT")
    # An editable install under a `zenml init` folder would otherwise resolve to `src.k8s_step_operator...`.
    source_utils.set_custom_source_root(package_parent)
    try:
        _, flavor = validate_flavor_source(FLAVOR_SOURCE, StackComponentType.STEP_OPERATOR)
        request = flavor.to_model(integration="custom", is_custom=True)
    finally:
        source_utils.set_custom_source_root(previous)
    if request.source != FLAVOR_SOURCE:
        request = request.model_copy(update={"source": FLAVOR_SOURCE})
    return request


def register_flavor(client: Any) -> str:
    """Register the ``k8s`` flavor; skip if registered with our source, refuse if with another."""
    from zenml.enums import StackComponentType

    from .flavor import FLAVOR_NAME

    existing = client.list_flavors(name=FLAVOR_NAME, type=StackComponentType.STEP_OPERATOR.value, hydrate=True).items
    for flavor in existing:
        if flavor.source == FLAVOR_SOURCE:
            return f"flavor `{FLAVOR_NAME}` is already registered ({FLAVOR_SOURCE})"
        raise RegistrationConflict(
            f"flavor `{FLAVOR_NAME}` is already registered with source `{flavor.source}`, not `{FLAVOR_SOURCE}`"
            + (
                "; a `src.` prefix means it was registered from inside the repository and only imports there"
                if flavor.source.startswith("src.")
                else ""
            )
            + f". Delete it (`zenml step-operator flavor delete {FLAVOR_NAME}`, possible while no component "
            "uses it) and run `k8s-step-operator register` again."
        )
    created = client.zen_store.create_flavor(flavor=_flavor_request())
    return f"registered flavor `{created.name}` ({created.source})"


def component_configuration(
    namespace: str, context: str | None = None, kubeconfig: str | None = None, local: bool = False
) -> dict[str, Any]:
    """The configuration ``register`` gives a component: only what was asked for, kubeconfig made absolute."""
    configuration: dict[str, Any] = {"kubernetes_namespace": namespace}
    if context:
        configuration["kubernetes_context"] = context
    if kubeconfig:
        configuration["kubeconfig"] = str(Path(kubeconfig).expanduser().resolve())
    if local:
        configuration["local"] = True
    return configuration


def register_component(client: Any, name: str, configuration: dict[str, Any]) -> str:
    """Create the step operator component, or update an existing ``k8s`` one."""
    from zenml.enums import StackComponentType

    from .flavor import FLAVOR_NAME

    found = client.list_stack_components(name=name, type=StackComponentType.STEP_OPERATOR).items
    if not found:
        client.create_stack_component(name, FLAVOR_NAME, StackComponentType.STEP_OPERATOR, configuration)
        return f"registered step operator `{name}` ({configuration})"
    current = found[0]
    if current.flavor_name != FLAVOR_NAME:
        raise RegistrationConflict(
            f"a step operator named `{name}` already exists with flavor `{current.flavor_name}`; choose another name"
        )
    if all(current.configuration.get(k) == v for k, v in configuration.items()):
        return f"step operator `{name}` is already registered with this configuration"
    client.update_stack_component(name, StackComponentType.STEP_OPERATOR, configuration=configuration)
    return f"updated step operator `{name}` ({configuration})"


def register_stack(client: Any, name: str, component: str) -> str:
    """Create (or update) a stack with the default orchestrator and artifact store plus the step operator."""
    from zenml.enums import StackComponentType as T

    try:
        stack = client.get_stack(name, allow_name_prefix_match=False)
    except KeyError:
        client.create_stack(
            name,
            components={
                T.ORCHESTRATOR: client.get_stack_component(T.ORCHESTRATOR, "default").id,
                T.ARTIFACT_STORE: client.get_stack_component(T.ARTIFACT_STORE, "default").id,
                T.STEP_OPERATOR: component,
            },
        )
        message = f"registered stack `{name}` (default orchestrator and artifact store, step operator `{component}`)"
    else:
        operators = stack.components.get(T.STEP_OPERATOR) or []
        if any(c.name == component for c in operators):
            message = f"stack `{name}` already has step operator `{component}`"
        else:
            client.update_stack(name, component_updates={T.STEP_OPERATOR: [component]})
            message = f"stack `{name}` now uses step operator `{component}`"
    client.activate_stack(name)
    return message + f"; `{name}` is the active stack"

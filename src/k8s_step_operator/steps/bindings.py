"""Values bound when a step is called in the pipeline — KFP's PipelineParams (pure: no cluster, no ZenML).

A step built by this package's factories declares the inputs it takes; each
may be bound, when the step is called in the pipeline, to a pipeline
parameter or an upstream step's output. Fields of a manifest become inputs
through placeholders: a string ``"{{inputs.replicas}}"`` is replaced by the
bound value as it is (an int stays an int); a placeholder inside a longer
string is replaced by the value's text (JSON for lists and maps).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .resource_spec import ResourceSpec, ResourceSpecError, validate_namespace, validate_object_name

__all__ = [
    "PLACEHOLDER_RE",
    "RESERVED_INPUTS",
    "bind_resource_inputs",
    "check_input_names",
    "placeholders",
    "refuse_unknown",
    "substitute",
]

PLACEHOLDER_RE = re.compile(r"\{\{\s*inputs\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_INPUT_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# ``spec`` carries the step's configuration; the others are ZenML's own call arguments.
RESERVED_INPUTS = ("spec", "id", "after", "start_after")


def placeholders(value: Any) -> tuple[str, ...]:
    """Names of the ``{{inputs.NAME}}`` placeholders in ``value``'s strings, in order of appearance."""
    found: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, str):
            found.extend(PLACEHOLDER_RE.findall(item))
        elif isinstance(item, Mapping):
            for child in item.values():
                walk(child)
        elif isinstance(item, list):
            for child in item:
                walk(child)

    walk(value)
    return tuple(dict.fromkeys(found))


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list, bool)) or value is None else str(value)


def substitute(value: Any, values: Mapping[str, Any], field_name: str = "k8s_resource") -> Any:
    """A copy of ``value`` with every placeholder replaced; an unbound one is an error naming it."""
    if isinstance(value, str):
        whole = PLACEHOLDER_RE.fullmatch(value.strip())
        names = PLACEHOLDER_RE.findall(value)
        missing = [name for name in names if values.get(name) is None]
        if missing:
            raise ResourceSpecError(
                f"{missing[0]}: {field_name} uses {{{{inputs.{missing[0]}}}}} but the step was called without it; "
                "bind it when calling the step"
            )
        if whole:
            return values[whole.group(1)]
        return PLACEHOLDER_RE.sub(lambda match: _text(values[match.group(1)]), value)
    if isinstance(value, Mapping):
        return {key: substitute(child, values, field_name) for key, child in value.items()}
    if isinstance(value, list):
        return [substitute(child, values, field_name) for child in value]
    return value


def check_input_names(names: Sequence[str], field_name: str) -> tuple[str, ...]:
    """Input names must be Python identifiers and not one of :data:`RESERVED_INPUTS`."""
    for name in names:
        if not isinstance(name, str) or not _INPUT_NAME_RE.match(name):
            raise ResourceSpecError(
                f"{field_name}: {name!r} cannot be a step input; allowed: a Python identifier "
                "(letters, digits and '_', not starting with a digit)"
            )
        if name in RESERVED_INPUTS:
            raise ResourceSpecError(
                f"{field_name}: {name!r} cannot be a step input (reserved: {', '.join(RESERVED_INPUTS)})"
            )
    return tuple(dict.fromkeys(names))


def refuse_unknown(step: str, bound: Mapping[str, Any], accepted: Sequence[str]) -> None:
    """Refuse call arguments the step does not take, naming the argument and the inputs it takes."""
    unknown = [key for key in bound if key not in accepted]
    if unknown:
        takes = ", ".join(accepted) if accepted else "none"
        raise ResourceSpecError(
            f"{unknown[0]}: step {step!r} takes no input {unknown[0]!r}; its inputs: {takes}"
        )


def bind_resource_inputs(spec: ResourceSpec, inputs: Mapping[str, Any]) -> ResourceSpec:
    """The spec with its manifest's placeholders replaced by the bound inputs; the name and namespace re-read."""
    if not placeholders(spec.body):
        return spec
    body = substitute(spec.body, inputs)
    metadata = (body.get("metadata") or {}) if isinstance(body, dict) else {}
    name = metadata.get("name") or spec.name
    namespace = metadata.get("namespace") or spec.namespace
    if name is not None:
        validate_object_name(name, "k8s_resource.metadata.name")
    if namespace is not None:
        validate_namespace(namespace, "k8s_resource.metadata.namespace")
    return spec.replace(body=body, name=name, namespace=namespace)

"""Tekton custom tasks as steps: the run object, its ``Succeeded`` condition and its results (pure).

A custom task (KFP-Tekton's seed fields ``apiVersion``, ``kind``, ``name``,
``taskSpec`` or ``taskRef``, params and ``file_outputs``) runs as a Tekton
``CustomRun`` (``tekton.dev/v1beta1``) that the custom task's controller
reconciles: ``spec.customRef`` names a task object (``taskRef``) or
``spec.customSpec`` embeds one (``taskSpec``), ``spec.params`` carries the
params. The controller reports ``status.conditions[type=Succeeded]`` —
``True``, ``False`` or ``Unknown`` with a reason and a message — and
``status.results`` as ``[{name, value}]``.

Every param is also a step input, so it can be bound when the step is called
(a pipeline parameter or an upstream output); a param whose value is
:data:`REQUIRED` must be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..names import dns1123_label
from .bindings import check_input_names
from .resource_spec import (
    Cleanup,
    ResourceSpecError,
    StepOptions,
    build_resource_spec,
    validate_api_version,
    validate_kind,
    validate_object_name,
)
from .spec_codec import SpecCodec

__all__ = [
    "CUSTOM_RUN_API_VERSION",
    "CUSTOM_TASK_OPTIONS",
    "CUSTOM_RUN_KIND",
    "REQUIRED",
    "CustomTaskSpec",
    "SucceededCondition",
    "build_custom_task_spec",
    "bind_params",
    "custom_run_manifest",
    "missing_results",
    "results_of",
    "succeeded_of",
]

CUSTOM_RUN_API_VERSION = "tekton.dev/v1beta1"
CUSTOM_RUN_KIND = "CustomRun"
REQUIRED = "<required>"
RESERVED_RESULTS = ("name", "manifest")
#: A custom-task step's defaults (those of ``custom_task_step``): its run object is deleted when the run ends.
CUSTOM_TASK_OPTIONS = StepOptions(cleanup=Cleanup.ON_RUN_END.value)


def succeeded_of(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(status, reason, message)`` of the ``Succeeded`` condition; status ``""`` when there is none yet."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "Succeeded":
            return str(condition.get("status") or ""), str(condition.get("reason") or ""), str(condition.get("message") or "")
    return "", "", ""


@dataclass(frozen=True)
class SucceededCondition:
    """``Succeeded`` is ``want`` (``True``: success condition, ``False``: failure condition).

    Implements the :class:`~k8s_step_operator.steps.conditions.Condition` protocol,
    so the resource steps' watch judges it like any other condition.
    """

    want: str
    field: str = "Succeeded"
    kind: str = "tekton"

    @property
    def text(self) -> str:
        """What the condition says."""
        return f"Succeeded == {self.want}"

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether the condition holds for ``obj``."""
        return self.check(obj)[0]

    def check(self, obj: Mapping[str, Any]) -> tuple[bool, str]:
        """``(matched, "Succeeded=<status> (<reason>): <message>")``."""
        status, reason, message = succeeded_of(obj)
        if not status:
            return False, "no Succeeded condition yet"
        shown = f"Succeeded={status}" + (f" ({reason})" if reason else "") + (f": {message}" if message else "")
        return status == self.want, shown


def results_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``status.results`` as a mapping of name to value."""
    table: dict[str, Any] = {}
    for item in (obj.get("status") or {}).get("results") or []:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            table[item["name"]] = item.get("value")
    return table


def missing_results(obj: Mapping[str, Any], wanted: Sequence[str]) -> list[str]:
    """The declared results the run did not report."""
    reported = results_of(obj)
    return [name for name in wanted if name not in reported]


def _param_value(value: Any, field_name: str) -> Any:
    """Tekton param values are strings, arrays of strings or objects of strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, Sequence):
        return [_param_value(item, f"{field_name}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(key): _param_value(item, f"{field_name}.{key}") for key, item in value.items()}
    raise ResourceSpecError(
        f"{field_name}: {type(value).__name__} is not a param value; allowed: a string, number, bool, list or mapping"
    )


def custom_run_manifest(
    api_version: str,
    kind: str,
    name: str,
    params: Mapping[str, Any],
    task_spec: Mapping[str, Any] | None,
    task_ref: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The ``CustomRun`` body (``generateName`` from ``name``: one object per step run)."""
    spec: dict[str, Any] = {"params": [{"name": key, "value": value} for key, value in params.items()]}
    if task_ref is not None:
        spec["customRef"] = {"apiVersion": api_version, "kind": kind, **task_ref}
    else:
        spec["customSpec"] = {"apiVersion": api_version, "kind": kind, "spec": dict(task_spec or {})}
    return {
        "apiVersion": CUSTOM_RUN_API_VERSION,
        "kind": CUSTOM_RUN_KIND,
        "metadata": {"generateName": f"{dns1123_label(name)[:50].rstrip('-.')}-"},
        "spec": spec,
    }


@dataclass(frozen=True)
class CustomTaskSpec(SpecCodec):
    """A custom-task step: its task's identity, params (defaults), results, and the resource step it runs."""

    api_version: str = ""
    kind: str = ""
    name: str = ""
    task_spec: dict[str, Any] | None = None
    task_ref: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    results: tuple[str, ...] = ()
    resource: dict[str, Any] = field(default_factory=dict)

    _spec_error = ResourceSpecError
    _tuple_fields = ("results",)
    _dict_fields = ("params", "resource")

    @property
    def output_names(self) -> tuple[str, ...]:
        """``name``, ``manifest`` and the results, in order."""
        return RESERVED_RESULTS + self.results


def _task_ref(value: Any, api_version: str, kind: str) -> dict[str, Any]:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise ResourceSpecError(f"task_ref: expected a mapping with name (or a name), got {type(value).__name__}")
    ref = dict(value)
    validate_object_name(ref.get("name"), "task_ref.name")
    for key, expected in (("apiVersion", api_version), ("kind", kind)):
        if key in ref and ref[key] != expected:
            raise ResourceSpecError(f"task_ref.{key}: {ref[key]!r} does not match the custom task's {expected!r}")
        ref.pop(key, None)
    return ref


def build_custom_task_spec(
    api_version: Any,
    kind: Any,
    name: Any,
    *,
    task_spec: Any = None,
    task_ref: Any = None,
    params: Mapping[str, Any] | None = None,
    results: Sequence[str] = (),
    options: StepOptions = CUSTOM_TASK_OPTIONS,
) -> CustomTaskSpec:
    """Validate the seed's fields; ``options`` (timeout, namespace, ...) go to the resource step creating the run."""
    validate_api_version(api_version, "api_version")
    validate_kind(kind, "kind")
    if not isinstance(name, str) or not name.strip() or not any(ch.isalnum() for ch in name):
        raise ResourceSpecError(f"name: {name!r} is not allowed; give the custom task's name (letters or digits)")
    if (task_spec is None) == (task_ref is None):
        raise ResourceSpecError("task_spec, task_ref: give exactly one (an inline task spec or a reference by name)")
    if task_spec is not None and not isinstance(task_spec, Mapping):
        raise ResourceSpecError(f"task_spec: expected a mapping (the task's spec), got {type(task_spec).__name__}")
    ref = _task_ref(task_ref, api_version, kind) if task_ref is not None else None
    if params is not None and not isinstance(params, Mapping):
        raise ResourceSpecError(f"params: expected a mapping of param names to values, got {type(params).__name__}")
    defaults = dict(params or {})
    check_input_names(list(defaults), "params")
    clean = {key: (value if value == REQUIRED else _param_value(value, f"params.{key}")) for key, value in defaults.items()}
    if isinstance(results, str) or not isinstance(results, Sequence):
        raise ResourceSpecError("results: expected a list of result names (the seed's file_outputs)")
    wanted = check_input_names(list(results), "results")
    clash = [r for r in wanted if r in RESERVED_RESULTS]
    if clash:
        raise ResourceSpecError(f"results: {clash[0]!r} is taken by the step's own output; rename the result")
    body = custom_run_manifest(api_version, kind, name, {}, dict(task_spec) if task_spec else None, ref)
    resource = build_resource_spec(body, action="create", options=options)
    return CustomTaskSpec(
        api_version=api_version,
        kind=kind,
        name=name,
        task_spec=dict(task_spec) if task_spec is not None else None,
        task_ref=ref,
        params=clean,
        results=wanted,
        resource=resource.to_dict(),
    )


def bind_params(spec: CustomTaskSpec, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The params: bound inputs over the defaults; a :data:`REQUIRED` param left unbound is an error."""
    values: dict[str, Any] = {}
    for key, default in spec.params.items():
        given = inputs.get(key)
        if given is not None:
            values[key] = _param_value(given, key)
        elif default == REQUIRED:
            raise ResourceSpecError(f"{key}: the custom task's param {key!r} is required; bind it when calling the step")
        else:
            values[key] = default
    return values

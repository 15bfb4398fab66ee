"""The functions ZenML runs for this package's steps, built from their inputs and outputs.

ZenML loads a step's function at run time from its import path, reads its
inputs from its signature and counts its outputs from a tuple literal in its
``return`` statement. A step's inputs and outputs depend on how it was defined
(attribute outputs, a CEL expression's variables, a custom task's results), so
each function is built here and named ``<kind>__<hex of its inputs and
outputs>``; this module's ``__getattr__`` rebuilds it from that name in any
process (orchestrator, step-operator pod). The step's configuration travels as
the ``spec`` parameter (a JSON-safe dict built at pipeline definition time);
every other input defaults to None (bound when the step is called, or not).
"""

# No ``from __future__ import annotations``: ZenML reads these annotations at run time.

import inspect
import json
from typing import Annotated, Any, Callable, Dict, List, Sequence, Tuple

__all__ = ["OUTPUT_TYPES", "Outputs", "entrypoint_for", "resource_entrypoint"]

OUTPUT_TYPES: Dict[str, Any] = {"str": str, "dict": Dict[str, Any], "any": Any, "list": List[Any]}


def _run_resource(spec: Dict[str, Any], inputs: Dict[str, Any]) -> Any:
    from .resource_runtime import run_resource

    return run_resource(spec, resource_name=inputs.pop("resource_name", None), inputs=inputs)


def _run_resources(spec: Dict[str, Any], inputs: Dict[str, Any]) -> Any:
    from .resource_runtime import run_resource_list

    return run_resource_list(spec, inputs=inputs)


def _run_volume(spec: Dict[str, Any], inputs: Dict[str, Any]) -> Any:
    from .volume_runtime import run_volume

    return run_volume(spec, inputs=inputs)


def _run_snapshot(spec: Dict[str, Any], inputs: Dict[str, Any]) -> Any:
    from .volume_runtime import run_snapshot

    return run_snapshot(spec, inputs=inputs)


def _run_cel(spec: Dict[str, Any], inputs: Dict[str, Any]) -> Any:
    from .cel_values import run_cel

    return run_cel(spec, inputs)


def _run_custom_task(spec: Dict[str, Any], inputs: Dict[str, Any]) -> Any:
    from .custom_task_runtime import run_custom_task

    return run_custom_task(spec, inputs)


_RUNNERS: Dict[str, Callable[[Dict[str, Any], Dict[str, Any]], Any]] = {
    "resource": _run_resource,
    "resources": _run_resources,
    "volume": _run_volume,
    "snapshot": _run_snapshot,
    "cel": _run_cel,
    "custom_task": _run_custom_task,
}


def _name(kind: str, inputs: Sequence[str], outputs: Sequence[Tuple[str, str]]) -> str:
    payload = json.dumps([list(inputs), [list(o) for o in outputs]], separators=(",", ":"))
    return f"{kind}__{payload.encode().hex()}"


def _build(attribute: str, kind: str, inputs: Tuple[str, ...], outputs: Tuple[Tuple[str, str], ...]) -> Any:
    runner = _RUNNERS[kind]
    names = tuple(name for name, _ in outputs)

    if len(outputs) == 1:

        def entrypoint(spec: Dict[str, Any], **values: Any) -> Any:
            """Run the step; its one output."""
            return runner(spec, dict(values)).values(names)

        returns: Any = Annotated[OUTPUT_TYPES[outputs[0][1]], outputs[0][0]]
    else:

        def entrypoint(spec: Dict[str, Any], **values: Any) -> Any:
            """Run the step; its outputs in order."""
            first, *rest = runner(spec, dict(values)).values(names)
            return (first, *rest)  # a tuple literal: ZenML reads the source to count outputs

        returns = Tuple[tuple(Annotated[OUTPUT_TYPES[code], name] for name, code in outputs)]
    parameters = [inspect.Parameter("spec", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Dict[str, Any])]
    parameters += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Any) for n in inputs]
    entrypoint.__signature__ = inspect.Signature(parameters, return_annotation=returns)  # type: ignore[attr-defined]
    entrypoint.__annotations__ = {"spec": Dict[str, Any], **{n: Any for n in inputs}, "return": returns}
    entrypoint.__name__ = attribute
    entrypoint.__qualname__ = attribute
    entrypoint.__module__ = __name__
    return entrypoint


def entrypoint_for(
    kind: str, inputs: Sequence[str], outputs: Sequence[Tuple[str, str]]
) -> Callable[..., Any]:
    """The function of a ``kind`` step taking ``inputs`` and returning ``outputs`` ((name, type code) pairs)."""
    if kind not in _RUNNERS:
        raise ValueError(f"kind: {kind!r} is not a step kind; allowed: {', '.join(_RUNNERS)}")
    unknown = [code for _, code in outputs if code not in OUTPUT_TYPES]
    if unknown or not outputs:
        raise ValueError(f"outputs: type codes must be one of {', '.join(OUTPUT_TYPES)}, at least one output")
    attribute = _name(kind, inputs, outputs)
    existing = globals().get(attribute)
    if existing is None:
        existing = _build(attribute, kind, tuple(inputs), tuple((n, c) for n, c in outputs))
        globals()[attribute] = existing
    return existing


def __getattr__(name: str) -> Any:
    """Rebuild a step function from its name (ZenML loads steps by import path)."""
    kind, sep, payload = name.partition("__")
    if sep and kind in _RUNNERS:
        try:
            inputs, outputs = json.loads(bytes.fromhex(payload).decode())
        except ValueError:
            raise AttributeError(name) from None
        return entrypoint_for(kind, tuple(inputs), tuple((n, c) for n, c in outputs))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Outputs(Dict[str, Any]):
    """A step's outputs by name, for steps with no object behind them (CEL)."""

    def values(self, names: Sequence[str]) -> Any:  # type: ignore[override]
        """One value, or a tuple of them in ``names`` order."""
        result = tuple(self[n] for n in names)
        return result[0] if len(result) == 1 else result


# What ZenML runs for a ``resource_step`` without attribute outputs (the benchmarks call it by this name).
resource_entrypoint = entrypoint_for("resource", ("resource_name",), (("name", "str"), ("manifest", "dict")))

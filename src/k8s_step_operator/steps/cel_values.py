"""CEL over pipeline values: KFP-Tekton's ``CEL_ConditionOp`` as a step (pure: no cluster access).

The expression is compiled when the step is defined (a syntax error fails the
pipeline definition, naming ``expression``); its free variables are the
step's inputs, bound when the step is called to pipeline parameters or
upstream outputs. The step's one output, ``outcome``, is the expression's
value (a bool for a condition) — in a dynamic pipeline it drives branching
(see :mod:`k8s_step_operator.steps.flow`). It is evaluated by the same CEL
library as the resource steps' conditions (:mod:`.conditions`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .bindings import check_input_names
from .conditions import ConditionError, compile_expression
from .entrypoints import Outputs
from .resource_spec import ResourceSpecError
from .spec_codec import SpecCodec

__all__ = ["CEL_OUTPUT", "CelStepSpec", "build_cel_spec", "check_cel_call", "run_cel"]

log = logging.getLogger(__name__)

CEL_OUTPUT = "outcome"  # KFP-Tekton's name for a CEL custom task's result


@dataclass(frozen=True)
class CelStepSpec(SpecCodec):
    """A CEL step's expression and the variables (inputs) it reads."""

    expression: str = ""
    variables: tuple[str, ...] = ()

    _spec_error = ResourceSpecError
    _tuple_fields = ("variables",)


def build_cel_spec(expression: Any) -> CelStepSpec:
    """Compile ``expression``; its free variables become the step's inputs."""
    try:
        compiled = compile_expression(expression, "expression")
    except ConditionError as exc:
        raise ResourceSpecError(str(exc)) from None
    variables = check_input_names(compiled.variables, "expression")
    return CelStepSpec(expression=compiled.source, variables=variables)


def check_cel_call(spec: CelStepSpec, step: str, bound: Mapping[str, Any]) -> None:
    """Every variable the expression reads must be bound when the step is called."""
    missing = [name for name in spec.variables if name not in bound]
    if missing:
        raise ResourceSpecError(
            f"{missing[0]}: step {step!r} evaluates {spec.expression!r}, which reads {missing[0]!r}; bind it "
            f"when calling the step ({', '.join(f'{n}=...' for n in spec.variables)})"
        )


def run_cel(spec: CelStepSpec | Mapping[str, Any], inputs: Mapping[str, Any]) -> Outputs:
    """Evaluate the expression over the bound inputs; the ``outcome`` output."""
    if not isinstance(spec, CelStepSpec):
        spec = CelStepSpec.from_dict(spec)
    try:
        value = compile_expression(spec.expression).evaluate(inputs)
    except ConditionError as exc:
        raise ResourceSpecError(str(exc)) from None
    shown = ", ".join(f"{name}={inputs.get(name)!r}" for name in spec.variables)
    log.info("CEL %r with %s: %r", spec.expression, shown or "no inputs", value)
    return Outputs({CEL_OUTPUT: value})

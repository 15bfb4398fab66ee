"""Run a custom-task step: create its ``CustomRun`` through the resource runtime and read its results.

The wait is the resource steps' watch (:mod:`.object_watch`), judging the run's
``Succeeded`` condition (:class:`.custom_task_spec.SucceededCondition`) unless
the step was given its own conditions. A run that ends ``Succeeded=False``
fails the step with the run's reason and message.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .cluster import Cluster
from .custom_task_spec import (
    CustomTaskSpec,
    SucceededCondition,
    bind_params,
    missing_results,
    results_of,
    succeeded_of,
)
from .errors import ConditionFailed, ResourceStepError
from .resource_runtime import RunInfo, StepResult, run_resource
from .resource_spec import ResourceSpec

__all__ = ["run_custom_task"]

log = logging.getLogger(__name__)


def run_custom_task(
    spec: CustomTaskSpec | Mapping[str, Any],
    inputs: Mapping[str, Any] | None = None,
    *,
    cluster: Cluster | None = None,
    run: RunInfo | None = None,
) -> StepResult:
    """Create the run with the bound params, wait for it, and output ``name``, ``manifest`` and its results."""
    if not isinstance(spec, CustomTaskSpec):
        spec = CustomTaskSpec.from_dict(spec)
    params = bind_params(spec, inputs or {})
    resource = ResourceSpec.from_dict(spec.resource)
    body = dict(resource.body)
    body["spec"] = {**body["spec"], "params": [{"name": key, "value": value} for key, value in params.items()]}
    resource = resource.replace(body=body)
    conditions = None
    if not (resource.success_condition or resource.failure_condition):
        conditions = (SucceededCondition("True"), SucceededCondition("False"))
    try:
        result = run_resource(resource, cluster=cluster, run=run, conditions=conditions)
    except ConditionFailed as exc:
        raise ConditionFailed(_failure_text(spec, exc)) from None
    manifest = result.manifest or {}
    missing = missing_results(manifest, spec.results)
    if missing:
        reported = ", ".join(sorted(results_of(manifest))) or "none"
        raise ResourceStepError(
            f"results: {spec.kind} run {result.name} finished without result(s) {', '.join(missing)}; "
            f"it reported: {reported}"
        )
    values = results_of(manifest)
    status, reason, _ = succeeded_of(manifest)
    log.info("%s run %s: Succeeded=%s%s", spec.kind, result.name, status or "-", f" ({reason})" if reason else "")
    return StepResult(name=result.name, manifest=manifest, outputs={key: values[key] for key in spec.results})


def _failure_text(spec: CustomTaskSpec, exc: ConditionFailed) -> str:
    """``<Kind> custom task (CustomRun <ns/name>) failed: Succeeded=False (<reason>): <message>``."""
    if exc.what is None or exc.verdict is None:
        return f"{spec.kind} custom task failed: {exc}"
    return f"{spec.kind} custom task ({exc.what}) failed: {exc.verdict}"

"""KFP-v1-style resource, volume and snapshot steps for ZenML pipelines.

* :func:`resource_step` — any action on any kind (KFP ``ResourceOp``), with Argo or
  CEL success/failure conditions evaluated on watch events, and JSONPath outputs.
* :func:`volume_step` — a PersistentVolumeClaim (KFP ``VolumeOp``); its ``name``
  output is what a ``k8s`` step operator step mounts via its ``pvolumes`` setting.
* :func:`snapshot_step` — a ``snapshot.storage.k8s.io/v1`` VolumeSnapshot (KFP
  ``VolumeSnapshotOp``); restore it with ``volume_step(...)(data_source=<name>)``.
* :func:`cel_step` — a CEL expression over pipeline values (KFP-Tekton's
  ``CEL_ConditionOp``); with :func:`run_when` it drives a dynamic pipeline's
  branches, and a step depending on a skipped one is skipped (Tekton's rule).
* :func:`custom_task_step` — a Tekton custom task run as a ``CustomRun``:
  waits for its ``Succeeded`` condition and outputs its results.
* :func:`delete_step` — delete one object.
* :func:`cleanup_run_resources` — pipeline hook deleting what a run created.

See :mod:`k8s_step_operator.steps.factories` for a full pipeline example.
"""

from __future__ import annotations

import importlib
from typing import Any

# Names → defining submodule. Imported lazily so that the pure modules
# (conditions, jsonpath, resource_spec, volume_spec) load without ZenML.
_EXPORTS = {
    "cleanup_run": "cleanup",
    "cleanup_run_resources": "cleanup",
    "ConditionFailed": "errors",
    "Forbidden": "errors",
    "ObjectDeleted": "errors",
    "ResourceStepError": "errors",
    "WaitTimeout": "errors",
    "cel_step": "factories",
    "custom_task_step": "factories",
    "delete_step": "factories",
    "resource_step": "factories",
    "snapshot_step": "factories",
    "volume_step": "factories",
    "REQUIRED": "custom_task_spec",
    "ResourceSpecError": "resource_spec",
    "Skipped": "flow",
    "run_when": "flow",
    "VOLUME_MODE_ROM": "volume_spec",
    "VOLUME_MODE_RWM": "volume_spec",
    "VOLUME_MODE_RWO": "volume_spec",
    "VOLUME_MODE_RWOP": "volume_spec",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import public names on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

"""Pure application of a ZenML resource-pool allocation to the step's settings (no API calls).

ZenML 0.98 hands a step operator that declares ``supports_resource_pool_allocation``
the resource request the pool granted. Like ZenML's own Kubernetes operator we
apply it in two parts: the pool's component-setting overrides are merged onto
the step's settings, and the granted CPU, memory and GPUs become the main
container's requests *and* limits (a pool hands out capacity, so a step may
not use more than it was granted).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from pydantic import ValidationError

from k8s_step_operator.settings import K8sPodSettings, K8sStepOperatorSettings
from k8s_step_operator.validation import parse_quantity

GPU_RESOURCE = "nvidia.com/gpu"
_MILLI_UNITS = {"m", "mcpu", "millicpu", "millicore", "millicores"}
# ZenML's memory units (any case) as Kubernetes quantity suffixes: the arithmetic is parse_quantity's.
_MEMORY_SUFFIXES = {
    "b": "",
    "kb": "k",
    "mb": "M",
    "gb": "G",
    "tb": "T",
    "kib": "Ki",
    "mib": "Mi",
    "gib": "Gi",
    "tib": "Ti",
}


@dataclass(frozen=True)
class Allocation:
    """One granted resource: kind (``cpu``, ``memory``, ``gpu``), quantity and unit."""

    kind: str
    quantity: int
    unit: Optional[str] = None


def cpu_millicores(quantity: int, unit: Optional[str]) -> int:
    """CPU in millicores; without a unit, small numbers are cores and large ones millicores (as ZenML)."""
    milli = quantity > 50 if unit is None else unit.lower() in _MILLI_UNITS
    return int(parse_quantity(f"{quantity}{'m' if milli else ''}") * 1000)


def memory_bytes(quantity: int, unit: Optional[str]) -> int:
    """Memory in bytes; without a unit, MiB (as ZenML).

    Raises:
        ValueError: If the unit is not a byte unit.
    """
    suffix = "Mi" if unit is None else _MEMORY_SUFFIXES.get(unit.lower())
    if suffix is None:
        raise ValueError(
            f"resource pool allocation: memory unit {unit!r} is not supported; allowed: "
            + ", ".join(sorted(_MEMORY_SUFFIXES))
        )
    return int(parse_quantity(f"{quantity}{suffix}"))


def granted_resources(allocations: Iterable[Allocation]) -> dict[str, str]:
    """The Kubernetes quantities granted by ``allocations`` (summed per kind)."""
    cpu = memory = gpus = 0
    for item in allocations:
        if item.kind == "cpu":
            cpu += cpu_millicores(item.quantity, item.unit)
        elif item.kind == "memory":
            memory += memory_bytes(item.quantity, item.unit)
        elif item.kind == "gpu":
            gpus += item.quantity
    granted: dict[str, str] = {}
    if cpu:
        granted["cpu"] = str(cpu // 1000) if cpu % 1000 == 0 else f"{cpu}m"
    if memory:
        granted["memory"] = f"{math.ceil(memory / 1024**2)}Mi"
    if gpus:
        granted[GPU_RESOURCE] = str(gpus)
    return granted


def with_component_settings(
    settings: K8sStepOperatorSettings, overrides: Mapping[str, Any], pool: str
) -> K8sStepOperatorSettings:
    """``settings`` with the pool's component-setting ``overrides`` merged on top.

    Raises:
        ValueError: If the merged settings are invalid (naming the pool and the overrides).
    """
    if not overrides:
        return settings
    merged = {**settings.model_dump(exclude_unset=True), **overrides}
    try:
        return K8sStepOperatorSettings.model_validate(merged)
    except (ValidationError, TypeError) as err:
        raise ValueError(
            f"resource pool {pool!r}: its component settings "
            f"{json.dumps(dict(overrides), default=str, sort_keys=True)} make the step operator settings "
            f"invalid: {err}"
        ) from err


def with_granted_resources(settings: K8sStepOperatorSettings, granted: Mapping[str, str]) -> K8sStepOperatorSettings:
    """``settings`` whose pod requests and limits are the granted quantities (others kept)."""
    if not granted:
        return settings
    pod_settings = settings.pod_settings or K8sPodSettings()
    resources = {key: dict(value) for key, value in (pod_settings.resources or {}).items()}
    for section in ("requests", "limits"):
        resources.setdefault(section, {}).update(granted)
    pod = pod_settings.model_copy(update={"resources": resources})
    return settings.model_copy(update={"pod_settings": pod})


def apply(settings: K8sStepOperatorSettings, request: Any) -> K8sStepOperatorSettings:
    """Apply a ZenML ``ResourceRequestResponse`` (None: nothing allocated) to ``settings``."""
    if request is None:
        return settings
    resources = request.get_resources()
    pool = getattr(request.get_body(), "pool_name", None) or "<unknown>"
    settings = with_component_settings(settings, resources.component_settings or {}, pool)
    allocations = [Allocation(a.resource_kind, int(a.quantity), a.unit) for a in resources.allocations or []]
    return with_granted_resources(settings, granted_resources(allocations))

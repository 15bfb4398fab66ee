"""The functions ZenML runs for resource, volume, snapshot and delete steps.

ZenML loads a step's function at run time from its import path, so these live
at module level, and it counts a function's outputs from a tuple literal in its
``return`` statement, so each returns one. A resource step's outputs depend on its ``attribute_outputs``;
its function is named ``resource_entrypoint__<hex of the output names>`` and
this module's ``__getattr__`` rebuilds it from that name in any process
(orchestrator, step-operator pod). The step's configuration travels as the
``spec`` parameter (a JSON-safe dict built at pipeline definition time).
"""

# No ``from __future__ import annotations``: ZenML reads these annotations at run time.

import json
from typing import Annotated, Any, Callable, Dict, Optional, Tuple

from .resource_runtime import run_resource
from .volume_runtime import run_snapshot, run_volume

__all__ = [
    "delete_entrypoint",
    "resource_entrypoint",
    "resource_entrypoint_for",
    "snapshot_entrypoint",
    "volume_entrypoint",
]

_DYNAMIC_PREFIX = "resource_entrypoint__"
_BASE_OUTPUTS = ("name", "manifest")


def resource_entrypoint(
    spec: Dict[str, Any], resource_name: Optional[str] = None
) -> Tuple[Annotated[str, "name"], Annotated[Dict[str, Any], "manifest"]]:
    """Perform a resource step (no attribute outputs)."""
    name, manifest = run_resource(spec, resource_name=resource_name).values(_BASE_OUTPUTS)
    return name, manifest


def delete_entrypoint(spec: Dict[str, Any], resource_name: Optional[str] = None) -> Annotated[str, "name"]:
    """Delete an object; returns its name."""
    return run_resource(spec, resource_name=resource_name).values(("name",))


def volume_entrypoint(
    spec: Dict[str, Any], data_source: Optional[str] = None
) -> Tuple[Annotated[str, "name"], Annotated[Dict[str, Any], "manifest"], Annotated[str, "size"]]:
    """Create a PersistentVolumeClaim; returns its name, manifest and (bound) size."""
    name, manifest, size = run_volume(spec, data_source=data_source).values(("name", "manifest", "size"))
    return name, manifest, size


def snapshot_entrypoint(
    spec: Dict[str, Any], pvc: Optional[str] = None, volume: Optional[str] = None
) -> Tuple[Annotated[str, "name"], Annotated[Dict[str, Any], "manifest"], Annotated[str, "size"]]:
    """Create a VolumeSnapshot; returns its name, manifest and restoreSize."""
    name, manifest, size = run_snapshot(spec, pvc=pvc, volume=volume).values(("name", "manifest", "size"))
    return name, manifest, size


def _build_resource_entrypoint(attribute: str, extra: Tuple[str, ...]) -> Callable[..., Any]:
    names = _BASE_OUTPUTS + extra

    def entrypoint(spec: Dict[str, Any], resource_name: Optional[str] = None) -> Any:
        """Perform a resource step with attribute outputs."""
        name, manifest, *attributes = run_resource(spec, resource_name=resource_name).values(names)
        return (name, manifest, *attributes)  # a tuple literal: ZenML reads the source to count outputs

    annotations = [Annotated[str, "name"], Annotated[Dict[str, Any], "manifest"]]
    annotations += [Annotated[Any, output] for output in extra]
    entrypoint.__annotations__["return"] = Tuple[tuple(annotations)]
    entrypoint.__name__ = attribute
    entrypoint.__qualname__ = attribute
    entrypoint.__module__ = __name__
    return entrypoint


def resource_entrypoint_for(extra_outputs: Tuple[str, ...]) -> Callable[..., Any]:
    """The entrypoint whose outputs are ``name``, ``manifest`` and ``extra_outputs`` (in order)."""
    if not extra_outputs:
        return resource_entrypoint
    attribute = _DYNAMIC_PREFIX + json.dumps(list(extra_outputs), separators=(",", ":")).encode().hex()
    existing = globals().get(attribute)
    if existing is None:
        existing = _build_resource_entrypoint(attribute, tuple(extra_outputs))
        globals()[attribute] = existing
    return existing


def __getattr__(name: str) -> Any:
    """Rebuild a dynamic resource entrypoint from its name (ZenML loads steps by import path)."""
    if name.startswith(_DYNAMIC_PREFIX):
        try:
            extra = tuple(json.loads(bytes.fromhex(name[len(_DYNAMIC_PREFIX) :]).decode()))
        except ValueError:
            raise AttributeError(name) from None
        return resource_entrypoint_for(extra)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

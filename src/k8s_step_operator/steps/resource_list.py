"""A resource step on several objects, acted on in order (pure: no cluster access).

``resource_step`` given a multi-document YAML or a list of objects validates
each object like a single one (errors name ``k8s_resource[i]``) and keeps
their specs in order; the runtime performs the action and the wait on each
in turn. Its outputs are lists, one item per object: ``name``, ``manifest``
and each attribute output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .resource_spec import ResourceSpec, ResourceSpecError, build_resource_spec
from .spec_codec import SpecCodec

__all__ = ["ResourceListSpec", "build_resource_list_spec"]


@dataclass(frozen=True)
class ResourceListSpec(SpecCodec):
    """The specs of a resource step's objects, in the order they are acted on."""

    items: list[dict[str, Any]] = field(default_factory=list)

    _spec_error = ResourceSpecError

    def specs(self) -> list[ResourceSpec]:
        """Each object's :class:`ResourceSpec`."""
        return [ResourceSpec.from_dict(item) for item in self.items]

    @property
    def output_names(self) -> tuple[str, ...]:
        """The outputs, the same as one object's (each then a list)."""
        return ResourceSpec.from_dict(self.items[0]).output_names


def build_resource_list_spec(objects: Sequence[Any], **options: Any) -> ResourceListSpec:
    """Validate each object with the step's options; ``resource_name`` cannot say which object it names."""
    if options.get("resource_name") is not None:
        raise ResourceSpecError(
            "resource_name: not allowed with several objects (each object names itself in metadata.name)"
        )
    items = []
    for index, obj in enumerate(objects):
        try:
            items.append(build_resource_spec(obj, **options).to_dict())
        except ResourceSpecError as exc:
            raise ResourceSpecError(f"k8s_resource[{index}]: {exc}") from None
    if not items:
        raise ResourceSpecError("k8s_resource: the list holds no object")
    return ResourceListSpec(items=items)

"""Volume (PVC) and VolumeSnapshot step options and manifests (pure: no cluster access).

Mirrors KFP v1's ``VolumeOp`` and ``VolumeSnapshotOp``, with the fixes users
asked for: any valid Kubernetes quantity as ``size``, ReadWriteOnce as the
default access mode, snapshots on the ``snapshot.storage.k8s.io/v1`` schema,
and clear errors (naming the option) for every bad input.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..names import dns1123_label
from ..validation import (
    is_model_object,
    parse_quantity,
    quantity_sign,
    sanitize,
    validate_annotations,
    validate_quantity,
)
from .resource_spec import (
    Cleanup,
    ResourceSpecError,
    StepOptions,
    load_resource,
    validate_object_name,
)
from .spec_codec import SpecCodec

__all__ = [
    "ACCESS_MODES",
    "DataSource",
    "SNAPSHOT_OPTIONS",
    "SnapshotSpec",
    "VOLUME_OPTIONS",
    "VOLUME_MODE_ROM",
    "VOLUME_MODE_RWM",
    "VOLUME_MODE_RWO",
    "VOLUME_MODE_RWOP",
    "SNAPSHOT_INPUTS",
    "VOLUME_INPUTS",
    "VolumeSpec",
    "bind_snapshot_inputs",
    "bind_volume_inputs",
    "one_of",
    "build_snapshot_spec",
    "build_volume_spec",
    "claim_name_of",
    "final_name",
    "refused_modes_message",
    "single_node_class_refuses",
    "normalize_modes",
    "parse_data_source",
    "pvc_manifest",
    "snapshot_manifest",
]

VOLUME_MODE_RWO: tuple[str, ...] = ("ReadWriteOnce",)
VOLUME_MODE_RWM: tuple[str, ...] = ("ReadWriteMany",)
VOLUME_MODE_ROM: tuple[str, ...] = ("ReadOnlyMany",)
VOLUME_MODE_RWOP: tuple[str, ...] = ("ReadWriteOncePod",)
ACCESS_MODES: tuple[str, ...] = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
_MODE_ALIASES = {
    "rwo": "ReadWriteOnce",
    "rwm": "ReadWriteMany",
    "rwx": "ReadWriteMany",
    "rom": "ReadOnlyMany",
    "rox": "ReadOnlyMany",
    "rwop": "ReadWriteOncePod",
}
SNAPSHOT_API_VERSION = "snapshot.storage.k8s.io/v1"
SNAPSHOT_GROUP = "snapshot.storage.k8s.io"
PVC_KINDS = ("PersistentVolumeClaim", "VolumeSnapshot")
DEFAULT_VOLUME_TIMEOUT = 600.0
PVC_SUCCESS = "status.phase==Bound"
PVC_FAILURE = "status.phase==Lost"
SNAPSHOT_SUCCESS = "status.readyToUse==true"
#: A volume step's defaults (those of ``volume_step``).
VOLUME_OPTIONS = StepOptions(
    timeout=DEFAULT_VOLUME_TIMEOUT, fail_on_events=("ProvisioningFailed",), cleanup=Cleanup.ON_RUN_END.value
)
#: A snapshot step's defaults (those of ``snapshot_step``).
SNAPSHOT_OPTIONS = StepOptions(
    success_condition=SNAPSHOT_SUCCESS, timeout=DEFAULT_VOLUME_TIMEOUT, cleanup=Cleanup.ON_RUN_END.value
)


def normalize_modes(modes: Any, field_name: str = "modes") -> list[str]:
    """Access modes: full names, the RWO/RWM/ROM constants, or RWO/RWX/ROX/RWOP short forms."""
    allowed = (
        "ReadWriteOnce (RWO), ReadOnlyMany (ROM/ROX), ReadWriteMany (RWM/RWX), ReadWriteOncePod (RWOP)"
    )
    if isinstance(modes, str):
        modes = [modes]
    if not isinstance(modes, Sequence) or not modes:
        raise ResourceSpecError(f"{field_name}: expected a non-empty list of access modes; allowed: {allowed}")
    result: list[str] = []
    for mode in modes:
        if not isinstance(mode, str):
            raise ResourceSpecError(f"{field_name}: {mode!r} is not an access mode; allowed: {allowed}")
        full = mode if mode in ACCESS_MODES else _MODE_ALIASES.get(mode.lower())
        if full is None:
            raise ResourceSpecError(f"{field_name}: {mode!r} is not an access mode; allowed: {allowed}")
        if full not in result:
            result.append(full)
    return result


# Provisioners whose filesystem volumes attach to one node at a time, as their documentation says: a
# ReadWriteMany claim on them can only fail. Every other class is judged by its provisioner's answer.
SINGLE_NODE_PROVISIONERS = frozenset({
    "ebs.csi.aws.com", "kubernetes.io/aws-ebs",
    "pd.csi.storage.gke.io", "kubernetes.io/gce-pd",
    "disk.csi.azure.com", "kubernetes.io/azure-disk",
    "rancher.io/local-path",
})
MULTI_NODE_MODES = ("ReadWriteMany", "ReadOnlyMany")
# How provisioners word a refused access mode (CSI's capability names, Kubernetes' mode names, prose).
_ACCESS_MODE_WORDS = ("access mode", "accessmode", "volume capabilit", "multi_node", "multi writer",
                      "readwritemany", "readonlymany")


def single_node_class_refuses(storage_class: Mapping[str, Any], modes: Sequence[str]) -> list[str]:
    """Multi-node modes a class cannot give because its provisioner is a documented single-node one."""
    if storage_class.get("provisioner") not in SINGLE_NODE_PROVISIONERS:
        return []
    return [mode for mode in modes if mode in MULTI_NODE_MODES]


def refused_modes_message(class_name: str | None, modes: Sequence[str], event_message: str) -> str | None:
    """A ``modes:`` error when a ProvisioningFailed message is about the claim's multi-node access modes."""
    wanted = [mode for mode in modes if mode in MULTI_NODE_MODES]
    if not wanted or not any(word in event_message.lower() for word in _ACCESS_MODE_WORDS):
        return None
    cls = f"storage class {class_name!r}" if class_name else "the default storage class"
    return f"modes: {cls} cannot provide {', '.join(wanted)}; its provisioner refused the claim: {event_message}"


def final_name(resource_name: str, run_name: str | None, generate_unique_name: bool) -> str:
    """DNS-1123 name: ``<run name>-<resource_name>`` (sanitized) unless ``generate_unique_name`` is off."""
    text = f"{run_name}-{resource_name}" if generate_unique_name and run_name else resource_name
    return dns1123_label(text)


def _validate_resource_name(resource_name: Any, field_name: str = "resource_name") -> str:
    if not isinstance(resource_name, str) or not resource_name.strip():
        raise ResourceSpecError(
            f"{field_name}: required (a name; it is sanitized to DNS-1123 and prefixed with the run name)"
        )
    if not re.search(r"[a-z0-9]", resource_name.lower()):
        raise ResourceSpecError(f"{field_name}: {resource_name!r} has no letters or digits to build a name from")
    return resource_name


# --------------------------------------------------------------------------- #
# Data sources
# --------------------------------------------------------------------------- #

_KIND_PREFIXES = {
    "volumesnapshot": ("VolumeSnapshot", SNAPSHOT_GROUP),
    "volumesnapshots": ("VolumeSnapshot", SNAPSHOT_GROUP),
    "persistentvolumeclaim": ("PersistentVolumeClaim", ""),
    "persistentvolumeclaims": ("PersistentVolumeClaim", ""),
    "pvc": ("PersistentVolumeClaim", ""),
}


@dataclass(frozen=True)
class DataSource:
    """A PVC's ``spec.dataSource``: a VolumeSnapshot to restore or a PVC to clone."""

    kind: str
    name: str
    api_group: str = ""

    def to_manifest(self) -> dict[str, str]:
        """The ``TypedLocalObjectReference`` body."""
        ref = {"kind": self.kind, "name": self.name}
        if self.api_group:
            ref["apiGroup"] = self.api_group
        return ref


def parse_data_source(
    value: Any, field_name: str = "data_source", default_kind: str = "VolumeSnapshot"
) -> DataSource | None:
    """A data source from a name (``default_kind``), ``pvc/<name>``, ``volumesnapshot/<name>``,
    a mapping/``V1TypedLocalObjectReference`` with kind and name, or None."""
    if value is None or value == "":
        return None
    if is_model_object(value):
        value = sanitize(value)
    if isinstance(value, str):
        prefix, slash, rest = value.partition("/")
        if slash:
            known = _KIND_PREFIXES.get(prefix.lower())
            if known is None:
                raise ResourceSpecError(
                    f"{field_name}: {value!r}: unknown kind prefix {prefix!r}; allowed: a VolumeSnapshot name, "
                    "'volumesnapshot/<name>' or 'pvc/<name>'"
                )
            kind, group = known
            return DataSource(kind, validate_object_name(rest, field_name), group)
        kind, group = _KIND_PREFIXES[default_kind.lower()]
        return DataSource(kind, validate_object_name(value, field_name), group)
    if isinstance(value, Mapping):
        kind = str(value.get("kind"))
        if kind not in PVC_KINDS:
            raise ResourceSpecError(
                f"{field_name}.kind: {value.get('kind')!r} is not allowed; allowed: VolumeSnapshot, PersistentVolumeClaim"
            )
        group = value.get("apiGroup") or (SNAPSHOT_GROUP if kind == "VolumeSnapshot" else "")
        return DataSource(kind, validate_object_name(value.get("name"), f"{field_name}.name"), group)
    raise ResourceSpecError(
        f"{field_name}: got {type(value).__name__}; allowed: a VolumeSnapshot name, 'pvc/<name>', "
        "'volumesnapshot/<name>', a snapshot step's name output, or a mapping with kind and name"
    )


def claim_name_of(volume: Any, field_name: str = "volume") -> str | None:
    """The PVC name behind ``volume``: a name (a volume step's output) or a V1Volume/dict with a PVC."""
    if volume is None:
        return None
    if is_model_object(volume):
        volume = sanitize(volume)
    if isinstance(volume, str):
        return validate_object_name(volume, field_name)
    if isinstance(volume, Mapping):
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if not claim:
            raise ResourceSpecError(
                f"{field_name}: the volume has no persistentVolumeClaim.claimName; snapshots need a PVC-backed volume"
            )
        return validate_object_name(claim, f"{field_name}.persistentVolumeClaim.claimName")
    raise ResourceSpecError(
        f"{field_name}: got {type(volume).__name__}; allowed: a PVC name (e.g. a volume step's name output) "
        "or a V1Volume with persistentVolumeClaim"
    )


# --------------------------------------------------------------------------- #
# Shared options
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class _Common(SpecCodec):
    """Options both steps share (``to_dict``/``from_dict`` from :class:`SpecCodec`)."""

    resource_name: str | None = None
    generate_unique_name: bool = True
    annotations: dict[str, str] = field(default_factory=dict)
    k8s_resource: dict[str, Any] | None = None
    namespace: str | None = None
    success_condition: str | None = None
    failure_condition: str | None = None
    timeout: float | None = DEFAULT_VOLUME_TIMEOUT
    fail_on_events: tuple[str, ...] = ()
    cleanup: str = Cleanup.ON_RUN_END.value
    kubeconfig: str | None = None
    context: str | None = None

    _spec_error = ResourceSpecError
    _tuple_fields = ("fail_on_events",)
    _given_tuple_fields = ("modes",)


def _common_options(
    *,
    kind: str,
    resource_name: Any,
    k8s_resource: Any,
    specific: Mapping[str, Any],
    annotations: Any,
    options: StepOptions,
    late: bool = False,
) -> dict[str, Any]:
    """Validate what both steps share; ``specific`` holds the options k8s_resource excludes.

    ``late``: ``resource_name`` may still be bound when the step is called.
    """
    manifest = None
    if k8s_resource is not None:
        given = [name for name, value in specific.items() if value not in (None, False, "", (), [], {})]
        if annotations:
            given.append("annotations")
        if resource_name is not None:
            given.append("resource_name")
        if given:
            raise ResourceSpecError(
                f"k8s_resource: give either k8s_resource or {', '.join(given)}, never both "
                f"(k8s_resource is the whole {kind})"
            )
        manifest = load_resource(k8s_resource)
        if not isinstance(manifest, dict):
            raise ResourceSpecError(f"k8s_resource: expected one {kind} object")
        if manifest.get("kind") != kind:
            raise ResourceSpecError(f"k8s_resource.kind: {manifest.get('kind')!r} is not allowed here; allowed: {kind}")
        metadata = manifest.get("metadata") or {}
        if not metadata.get("name") and not metadata.get("generateName"):
            raise ResourceSpecError("k8s_resource.metadata.name: missing; give metadata.name or metadata.generateName")
        if metadata.get("name"):
            validate_object_name(metadata["name"], "k8s_resource.metadata.name")
    elif resource_name is not None or not late:
        _validate_resource_name(resource_name)
    notes: dict[str, str] = {}
    if annotations:
        try:
            notes = validate_annotations(annotations, "annotations")
        except ValueError as exc:
            raise ResourceSpecError(str(exc)) from None
    return {
        "resource_name": resource_name if manifest is None else None,
        "annotations": notes,
        "k8s_resource": manifest,
        **options.as_dict(),
    }


# --------------------------------------------------------------------------- #
# Volume (PVC)
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class VolumeSpec(_Common):
    """A validated volume-step configuration."""

    size: str | None = None
    storage_class: str | None = None
    modes: tuple[str, ...] = VOLUME_MODE_RWO
    data_source: dict[str, str] | None = None
    data_source_kind: str = "VolumeSnapshot"
    volume_name: str | None = None
    volume_mode: str | None = None
    fail_on_events: tuple[str, ...] = ("ProvisioningFailed",)


def build_volume_spec(
    resource_name: str | None = None,
    size: Any = None,
    *,
    storage_class: str | None = None,
    modes: Any = VOLUME_MODE_RWO,
    annotations: Mapping[str, str] | None = None,
    data_source: Any = None,
    data_source_kind: str = "VolumeSnapshot",
    volume_name: str | None = None,
    volume_mode: str | None = None,
    k8s_resource: Any = None,
    generate_unique_name: bool = True,
    options: StepOptions = VOLUME_OPTIONS,
    late_inputs: bool = False,
) -> VolumeSpec:
    """Validate every volume-step option; errors name the option and what is allowed.

    ``size`` may be omitted when a data source is given (the snapshot's
    ``restoreSize`` or the source claim's size is used) or bound at run time
    (``late_inputs``: resource_name, size and data_source may be step inputs).
    ``options``: namespace, conditions, timeout, events, clean-up and cluster (checked when built).
    """
    modes_given = modes is not None and tuple(modes if not isinstance(modes, str) else (modes,)) != VOLUME_MODE_RWO
    specific = {
        "size": size,
        "storage_class": storage_class,
        "modes": modes if modes_given else None,
        "data_source": data_source,
        "volume_name": volume_name,
        "volume_mode": volume_mode,
    }
    common = _common_options(
        kind="PersistentVolumeClaim",
        resource_name=resource_name,
        k8s_resource=k8s_resource,
        specific=specific,
        annotations=annotations,
        options=options,
        late=late_inputs,
    )
    if data_source_kind not in PVC_KINDS:
        raise ResourceSpecError(
            f"data_source_kind: {data_source_kind!r} is not allowed; allowed: VolumeSnapshot, PersistentVolumeClaim"
        )
    if common["k8s_resource"] is not None:
        return VolumeSpec(**common, modes=(), data_source_kind=data_source_kind)
    source = parse_data_source(data_source, default_kind=data_source_kind)
    if size is None:
        if source is None and not late_inputs:
            raise ResourceSpecError(
                "size: required (a Kubernetes quantity such as '1Gi' or '500Mi'); it may only be left out "
                "when data_source gives a snapshot or claim to take the size from"
            )
        size_text = None
    else:
        try:
            size_text = validate_quantity(size, "size")
        except ValueError as exc:
            raise ResourceSpecError(str(exc)) from None
        if quantity_sign(size_text) <= 0:
            raise ResourceSpecError(f"size: {size_text!r} is not allowed; a volume needs a size > 0 (e.g. '1Gi')")
    if storage_class is not None and not isinstance(storage_class, str):
        raise ResourceSpecError(f"storage_class: expected a StorageClass name, got {type(storage_class).__name__}")
    if storage_class:
        validate_object_name(storage_class, "storage_class")
    if volume_name is not None:
        validate_object_name(volume_name, "volume_name")
    if volume_mode not in (None, "Filesystem", "Block"):
        raise ResourceSpecError(f"volume_mode: {volume_mode!r} is not allowed; allowed: Filesystem, Block")
    return VolumeSpec(
        **common,
        size=size_text,
        storage_class=storage_class,
        modes=tuple(normalize_modes(modes if modes is not None else VOLUME_MODE_RWO)),
        data_source=source.to_manifest() if source else None,
        data_source_kind=data_source_kind,
        volume_name=volume_name,
        volume_mode=volume_mode,
        generate_unique_name=bool(generate_unique_name),
    )


def pvc_manifest(
    spec: VolumeSpec,
    name: str,
    *,
    size: str,
    data_source: DataSource | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The PersistentVolumeClaim body (core/v1)."""
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    if spec.annotations:
        metadata["annotations"] = dict(spec.annotations)
    body: dict[str, Any] = {
        "accessModes": list(spec.modes or VOLUME_MODE_RWO),
        "resources": {"requests": {"storage": size}},
    }
    if spec.storage_class is not None:
        body["storageClassName"] = spec.storage_class
    if spec.volume_name:
        body["volumeName"] = spec.volume_name
    if spec.volume_mode:
        body["volumeMode"] = spec.volume_mode
    if data_source is not None:
        body["dataSource"] = data_source.to_manifest()
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata, "spec": body}


def quantity_at_least(size: str, minimum: str) -> bool:
    """Whether quantity ``size`` ≥ ``minimum`` (both Kubernetes quantities)."""
    return parse_quantity(size) >= parse_quantity(minimum)


# --------------------------------------------------------------------------- #
# VolumeSnapshot
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class SnapshotSpec(_Common):
    """A validated snapshot-step configuration."""

    pvc: str | None = None
    snapshot_class: str | None = None


def build_snapshot_spec(
    resource_name: str | None = None,
    *,
    pvc: Any = None,
    volume: Any = None,
    snapshot_class: str | None = None,
    annotations: Mapping[str, str] | None = None,
    k8s_resource: Any = None,
    generate_unique_name: bool = True,
    options: StepOptions = SNAPSHOT_OPTIONS,
    late_inputs: bool = False,
) -> SnapshotSpec:
    """Validate every snapshot-step option. ``pvc`` and ``volume`` exclude each other.

    ``late_inputs``: the PVC (the step's ``pvc`` or ``volume`` input) and the
    resource_name may be bound at call time, so leaving them out is not an error here.
    """
    if pvc is not None and volume is not None:
        raise ResourceSpecError(
            "pvc, volume: give exactly one of them (pvc: a PVC name; volume: a volume step's name output "
            "or a V1Volume), not both"
        )
    claim = validate_object_name(pvc, "pvc") if pvc is not None else claim_name_of(volume)
    specific = {"pvc": pvc, "volume": volume, "snapshot_class": snapshot_class}
    common = _common_options(
        kind="VolumeSnapshot",
        resource_name=resource_name,
        k8s_resource=k8s_resource,
        specific=specific,
        annotations=annotations,
        options=options,
        late=late_inputs,
    )
    if common["k8s_resource"] is not None:
        manifest = common["k8s_resource"]
        if manifest.get("apiVersion") != SNAPSHOT_API_VERSION:
            raise ResourceSpecError(
                f"k8s_resource.apiVersion: {manifest.get('apiVersion')!r} is not allowed; allowed: {SNAPSHOT_API_VERSION}"
            )
        return SnapshotSpec(**common)
    if claim is None and not late_inputs:
        raise ResourceSpecError(
            "pvc, volume: give one of them (pvc: a PVC name; volume: a volume step's name output or a V1Volume)"
        )
    if snapshot_class is not None:
        validate_object_name(snapshot_class, "snapshot_class")
    return SnapshotSpec(**common, pvc=claim, snapshot_class=snapshot_class, generate_unique_name=bool(generate_unique_name))


def snapshot_manifest(
    spec: SnapshotSpec, name: str, *, pvc: str, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The VolumeSnapshot body (``snapshot.storage.k8s.io/v1``)."""
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    if spec.annotations:
        metadata["annotations"] = dict(spec.annotations)
    body: dict[str, Any] = {"source": {"persistentVolumeClaimName": pvc}}
    if spec.snapshot_class:
        body["volumeSnapshotClassName"] = spec.snapshot_class
    return {"apiVersion": SNAPSHOT_API_VERSION, "kind": "VolumeSnapshot", "metadata": metadata, "spec": body}


# --------------------------------------------------------------------------- #
# Values bound when the step is called (KFP's PipelineParams)
# --------------------------------------------------------------------------- #

VOLUME_INPUTS = ("resource_name", "size", "storage_class", "annotations", "data_source")
SNAPSHOT_INPUTS = ("resource_name", "pvc", "volume", "snapshot_class", "annotations")


def one_of(field_name: str, defined: Any, given: Any) -> Any:
    """The value given when the step was defined or at call time; both (different) is an error."""
    if defined not in (None, {}) and given is not None and defined != given:
        raise ResourceSpecError(
            f"{field_name}: given both when the step was defined ({defined!r}) and as a step input ({given!r}); give one"
        )
    return given if given is not None else defined


def _bind_common(spec: _Common, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Bound ``resource_name`` and ``annotations``, validated like the factory's arguments."""
    changes: dict[str, Any] = {}
    if spec.k8s_resource is not None:
        given = [key for key, value in inputs.items() if value is not None]
        if given:
            raise ResourceSpecError(f"{given[0]}: not allowed with k8s_resource (the manifest says it all)")
        return changes
    name = one_of("resource_name", spec.resource_name, inputs.get("resource_name"))
    changes["resource_name"] = _validate_resource_name(name)
    if inputs.get("annotations") is not None:
        try:
            notes = validate_annotations(inputs["annotations"], "annotations")
        except ValueError as exc:
            raise ResourceSpecError(str(exc)) from None
        changes["annotations"] = one_of("annotations", spec.annotations, notes)
    return changes


def bind_volume_inputs(spec: VolumeSpec, inputs: Mapping[str, Any]) -> VolumeSpec:
    """The spec with the step's bound inputs (all but ``data_source``, which the runtime resolves) applied."""
    plain = {key: value for key, value in inputs.items() if key != "data_source"}
    changes = _bind_common(spec, plain)
    if spec.k8s_resource is not None:
        return spec
    if plain.get("size") is not None:
        try:
            size = validate_quantity(plain["size"], "size")
        except ValueError as exc:
            raise ResourceSpecError(str(exc)) from None
        if quantity_sign(size) <= 0:
            raise ResourceSpecError(f"size: {size!r} is not allowed; a volume needs a size > 0 (e.g. '1Gi')")
        changes["size"] = one_of("size", spec.size, size)
    if plain.get("storage_class") is not None:
        changes["storage_class"] = one_of(
            "storage_class", spec.storage_class, validate_object_name(plain["storage_class"], "storage_class")
        )
    return dataclasses.replace(spec, **changes)


def bind_snapshot_inputs(spec: SnapshotSpec, inputs: Mapping[str, Any]) -> SnapshotSpec:
    """The spec with bound ``resource_name``, ``annotations`` and ``snapshot_class`` applied."""
    plain = {key: value for key, value in inputs.items() if key not in ("pvc", "volume")}
    changes = _bind_common(spec, plain)
    if spec.k8s_resource is not None:
        return spec
    if plain.get("snapshot_class") is not None:
        changes["snapshot_class"] = one_of(
            "snapshot_class", spec.snapshot_class, validate_object_name(plain["snapshot_class"], "snapshot_class")
        )
    return dataclasses.replace(spec, **changes)

"""Run volume (PVC) and snapshot steps: up-front cluster checks, then a create through the resource runtime.

Checks made before anything is created (each a clear error naming the option):
the storage class exists and, when its provisioner is a documented single-node
one (EBS, PD, Azure Disk, local-path), the claim asks no multi-node mode; the data
source / source PVC exists, and a restore is at least as large as the snapshot's
``restoreSize``. Any other refusal of an access mode comes from the provisioner
itself, as a ProvisioningFailed event: the wait ends at once with a ``modes:``
error quoting it.

With a ``WaitForFirstConsumer`` storage class the claim stays Pending until a
pod uses it, so the volume step does not wait for Bound: it returns the
requested size and says so in the log.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Mapping

from .cluster import Cluster, connect
from .discovery import ApiResource
from .errors import ConditionFailed, ResourceStepError
from .resource_runtime import Executor, RunInfo, StepResult, run_resource
from .resource_spec import Action, ResourceSpec, ResourceSpecError
from .volume_spec import (
    PVC_FAILURE,
    PVC_SUCCESS,
    SNAPSHOT_API_VERSION,
    DataSource,
    SnapshotSpec,
    VolumeSpec,
    bind_snapshot_inputs,
    bind_volume_inputs,
    final_name,
    one_of,
    parse_data_source,
    pvc_manifest,
    quantity_at_least,
    refused_modes_message,
    single_node_class_refuses,
    snapshot_manifest,
)

__all__ = ["run_snapshot", "run_volume"]

log = logging.getLogger(__name__)

PVC = ApiResource("v1", "PersistentVolumeClaim", "persistentvolumeclaims", True)
STORAGE_CLASS = ApiResource("storage.k8s.io/v1", "StorageClass", "storageclasses", False)
DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)
SNAPSHOT_CLASS_DEFAULT = "snapshot.storage.kubernetes.io/is-default-class"


# --------------------------------------------------------------------------- #
# Storage classes
# --------------------------------------------------------------------------- #


def read_storage_class(executor: Executor, name: str | None) -> dict[str, Any] | None:
    """The named class, or the default one when ``name`` is None; None when unreadable or absent.

    A named class that does not exist is an error listing the classes there are.
    """
    try:
        if name:
            obj = executor.read(STORAGE_CLASS, None, name)
            if obj is None:
                items = executor.list_items(STORAGE_CLASS, None, "StorageClasses")
                names = sorted(i["metadata"]["name"] for i in items)
                raise ResourceSpecError(
                    f"storage_class: the cluster has no StorageClass {name!r}; allowed: {', '.join(names) or 'none'}"
                )
            return obj
        items = executor.list_items(STORAGE_CLASS, None, "StorageClasses")
    except ResourceSpecError:
        raise
    except ResourceStepError as exc:
        log.info("cannot read storage classes (%s); skipping the up-front checks", exc)
        return None
    for item in items:
        notes = (item.get("metadata") or {}).get("annotations") or {}
        if any(notes.get(key) == "true" for key in DEFAULT_CLASS_ANNOTATIONS):
            return item
    return None


def _check_class(storage_class: Mapping[str, Any] | None, modes: list[str]) -> bool:
    """Raise when the class cannot offer ``modes``; return whether it binds on first consumer."""
    if storage_class is None:
        return False
    class_name = storage_class["metadata"]["name"]
    refused = single_node_class_refuses(storage_class, modes)
    if refused:
        raise ResourceSpecError(
            f"modes: storage class {class_name!r} does not offer {', '.join(refused)}: its provisioner "
            f"{storage_class.get('provisioner')} attaches a volume to one node at a time; allowed: ReadWriteOnce, "
            "ReadWriteOncePod"
        )
    return storage_class.get("volumeBindingMode") == "WaitForFirstConsumer"


# --------------------------------------------------------------------------- #
# Volume
# --------------------------------------------------------------------------- #


def _source_size(executor: Executor, source: DataSource, namespace: str) -> str | None:
    """The size a restore/clone needs (snapshot restoreSize or source claim size); error if absent."""
    if source.kind == "VolumeSnapshot":
        res = executor.resolve(SNAPSHOT_API_VERSION, "VolumeSnapshot", "data_source.kind")
    else:
        res = PVC
    obj = executor.read(res, namespace, source.name)
    if obj is None:
        raise ResourceSpecError(f"data_source: no {source.kind} {source.name!r} in namespace {namespace!r}")
    status = obj.get("status") or {}
    if source.kind == "VolumeSnapshot":
        return status.get("restoreSize")
    return (status.get("capacity") or {}).get("storage") or (
        ((obj.get("spec") or {}).get("resources") or {}).get("requests") or {}
    ).get("storage")


def run_volume(
    spec: VolumeSpec | Mapping[str, Any],
    *,
    cluster: Cluster | None = None,
    run: RunInfo | None = None,
    data_source: str | None = None,
    check_storage_class: bool = True,
    inputs: Mapping[str, Any] | None = None,
) -> StepResult:
    """Create the PVC, wait for Bound (unless WaitForFirstConsumer); outputs name, manifest, size.

    ``inputs``: the step's bound inputs (resource_name, size, storage_class, annotations, data_source).
    """
    if not isinstance(spec, VolumeSpec):
        spec = VolumeSpec.from_dict(spec)
    inputs = dict(inputs or {})
    data_source = one_of("data_source", inputs.pop("data_source", None), data_source)
    spec = bind_volume_inputs(spec, inputs)
    run = run or RunInfo.from_step_context()
    cluster = cluster or connect(spec.namespace, kubeconfig=spec.kubeconfig, context=spec.context)
    executor = Executor(cluster, run)
    namespace = spec.namespace or cluster.namespace

    if spec.k8s_resource is not None:
        if data_source is not None:
            raise ResourceSpecError("data_source: not allowed with k8s_resource (put spec.dataSource in the manifest)")
        body = copy.deepcopy(spec.k8s_resource)
        pvc_spec = body.get("spec") or {}
        name = (body.get("metadata") or {}).get("name")
        class_name = pvc_spec.get("storageClassName")
        modes = list(pvc_spec.get("accessModes") or [])
        size = ((pvc_spec.get("resources") or {}).get("requests") or {}).get("storage")
    else:
        defined = parse_data_source(spec.data_source) if spec.data_source else None
        given = parse_data_source(data_source, default_kind=spec.data_source_kind)
        source = one_of("data_source", defined, given)
        name = final_name(spec.resource_name or "", run.run_name, spec.generate_unique_name)
        class_name = spec.storage_class
        modes = list(spec.modes)
        size = spec.size
        if source is not None:
            needed = _source_size(executor, source, namespace)
            if size is None:
                if not needed:
                    raise ResourceSpecError(
                        f"size: required; {source.kind} {source.name!r} reports no size yet to take it from"
                    )
                size = needed
                log.info("size: taking %s from %s %s", size, source.kind, source.name)
            elif needed and not quantity_at_least(size, needed):
                raise ResourceSpecError(
                    f"size: {size!r} is smaller than {source.kind} {source.name!r} needs ({needed}); "
                    f"allowed: at least {needed}"
                )
        elif size is None:
            raise ResourceSpecError("size: required (a Kubernetes quantity such as '1Gi') when there is no data_source")
        body = pvc_manifest(spec, name, size=size, data_source=source)

    wait_for_first_consumer = False
    if check_storage_class and class_name != "":
        storage_class = read_storage_class(executor, class_name)
        wait_for_first_consumer = _check_class(storage_class, modes)
        class_name = storage_class["metadata"]["name"] if storage_class else class_name  # the default's name
    success, failure = spec.success_condition, spec.failure_condition
    if wait_for_first_consumer:
        if success:
            log.warning(
                "success_condition %r on a WaitForFirstConsumer class: the claim binds only when a pod uses it",
                success,
            )
    elif success is None and failure is None:
        success, failure = PVC_SUCCESS, PVC_FAILURE

    resource = ResourceSpec(
        action=Action.CREATE.value,
        body=body,
        api_version="v1",
        kind="PersistentVolumeClaim",
        name=name,
        generate_name=(body.get("metadata") or {}).get("generateName") if not name else None,
        namespace=namespace,
        success_condition=success,
        failure_condition=failure,
        timeout=spec.timeout,
        fail_on_events=spec.fail_on_events,
        cleanup=spec.cleanup,
        kubeconfig=spec.kubeconfig,
        context=spec.context,
    )
    try:
        result = run_resource(resource, cluster=cluster, run=run)
    except ConditionFailed as exc:
        clearer = refused_modes_message(class_name, modes, str(exc)) if exc.event_reason == "ProvisioningFailed" else None
        if clearer:
            raise ConditionFailed(clearer) from exc
        raise
    manifest = result.manifest or {}
    bound = ((manifest.get("status") or {}).get("capacity") or {}).get("storage")
    phase = (manifest.get("status") or {}).get("phase")
    if bound and phase == "Bound":
        result.outputs["size"] = bound
    else:
        requested = (((manifest.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage", size)
        result.outputs["size"] = requested
        if wait_for_first_consumer:
            log.info(
                "PersistentVolumeClaim %s/%s: storage class uses WaitForFirstConsumer, so it binds when the first "
                "pod mounts it; not waiting for Bound, size output is the requested %s",
                namespace,
                result.name,
                requested,
            )
    return result


# --------------------------------------------------------------------------- #
# Snapshot
# --------------------------------------------------------------------------- #


def _check_snapshot_class(executor: Executor, name: str) -> None:
    res = executor.resolve(SNAPSHOT_API_VERSION, "VolumeSnapshotClass", "snapshot_class")
    try:
        found = executor.read(res, None, name)
    except ResourceStepError as exc:
        log.info("cannot read VolumeSnapshotClass %s (%s); skipping the check", name, exc)
        return
    if found is None:
        names = sorted(i["metadata"]["name"] for i in executor.list_items(res, None, "VolumeSnapshotClasses"))
        raise ResourceSpecError(
            f"snapshot_class: the cluster has no VolumeSnapshotClass {name!r}; allowed: {', '.join(names) or 'none'}"
        )


def run_snapshot(
    spec: SnapshotSpec | Mapping[str, Any],
    *,
    cluster: Cluster | None = None,
    run: RunInfo | None = None,
    pvc: str | None = None,
    volume: str | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> StepResult:
    """Create the VolumeSnapshot and wait for readyToUse; outputs name, manifest, size (restoreSize).

    ``inputs``: the step's bound inputs (resource_name, pvc, volume, snapshot_class, annotations).
    """
    if not isinstance(spec, SnapshotSpec):
        spec = SnapshotSpec.from_dict(spec)
    inputs = dict(inputs or {})
    pvc = one_of("pvc", inputs.pop("pvc", None), pvc)
    volume = one_of("volume", inputs.pop("volume", None), volume)
    spec = bind_snapshot_inputs(spec, inputs)
    if pvc is not None and volume is not None:
        raise ResourceSpecError("pvc, volume: give exactly one of them as step inputs, not both")
    run = run or RunInfo.from_step_context()
    cluster = cluster or connect(spec.namespace, kubeconfig=spec.kubeconfig, context=spec.context)
    executor = Executor(cluster, run)
    namespace = spec.namespace or cluster.namespace

    if spec.k8s_resource is not None:
        if pvc is not None or volume is not None:
            raise ResourceSpecError("pvc, volume: not allowed with k8s_resource (put spec.source in the manifest)")
        body = copy.deepcopy(spec.k8s_resource)
        name = (body.get("metadata") or {}).get("name")
    else:
        given = pvc if pvc is not None else volume
        claim = one_of("pvc" if pvc is not None else "volume", spec.pvc, given)
        if not claim:
            raise ResourceSpecError(
                "pvc, volume: the snapshot step has no source; give pvc=... or volume=... (e.g. a volume step's output)"
            )
        source = executor.read(PVC, namespace, claim)
        if source is None:
            raise ResourceSpecError(f"pvc: no PersistentVolumeClaim {claim!r} in namespace {namespace!r}")
        if spec.snapshot_class:
            _check_snapshot_class(executor, spec.snapshot_class)
        name = final_name(spec.resource_name or "", run.run_name, spec.generate_unique_name)
        body = snapshot_manifest(spec, name, pvc=claim)

    resource = ResourceSpec(
        action=Action.CREATE.value,
        body=body,
        api_version=SNAPSHOT_API_VERSION,
        kind="VolumeSnapshot",
        name=name,
        generate_name=(body.get("metadata") or {}).get("generateName") if not name else None,
        namespace=namespace,
        success_condition=spec.success_condition,
        failure_condition=spec.failure_condition,
        timeout=spec.timeout,
        fail_on_events=spec.fail_on_events,
        cleanup=spec.cleanup,
        kubeconfig=spec.kubeconfig,
        context=spec.context,
    )
    result = run_resource(resource, cluster=cluster, run=run)
    status = (result.manifest or {}).get("status") or {}
    result.outputs["size"] = status.get("restoreSize") or ""
    return result

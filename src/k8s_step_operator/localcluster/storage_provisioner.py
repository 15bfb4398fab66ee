"""The local hostPath provisioner: PersistentVolumes for claims of our StorageClasses.

For each unbound claim the kube-controller-manager hands to us (it writes our name in
``volume.kubernetes.io/storage-provisioner``; with WaitForFirstConsumer only after the
scheduler chose a node), create ``<state>/pv/<pv-name>`` (empty, or a copy of a
VolumeSnapshot's data or of another claim's volume) and then a hostPath PV pre-bound to
the claim; the controller-manager's PV controller does the binding. Released PVs with
reclaim policy Delete lose their directory and are deleted.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from .storage_kube import (
    EventRecorder,
    Informer,
    Kube,
    Obj,
    PathLocks,
    Requeue,
    WorkQueue,
    annotations,
    api_message,
    copy_tree_atomic,
    is_within,
    log,
    meta,
    obj_key,
    quantity_bytes,
    remove_tree,
    split_key,
)

PROVISIONER = "localcluster.k8s-step-operator.io/hostpath"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
HOSTNAME_LABEL = "kubernetes.io/hostname"
SNAPSHOT_GROUP = "snapshot.storage.k8s.io"
ALL_ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")


class ProvisioningError(Exception):
    """A claim cannot be provisioned as asked; reported as a ProvisioningFailed event."""


def pv_name_for(claim: Obj) -> str:
    """The deterministic PV name for a claim (``pvc-<claim uid>``), so retries never create two."""
    return f"pvc-{meta(claim)['uid']}"


def supported_access_modes(storage_class: Obj) -> list[str]:
    """The access modes a class offers: its ``accessModes`` parameter (comma-separated) or all four."""
    raw = ((storage_class.get("parameters") or {}).get("accessModes") or "").strip()
    if not raw:
        return list(ALL_ACCESS_MODES)
    modes = [m.strip() for m in raw.split(",") if m.strip()]
    unknown = [m for m in modes if m not in ALL_ACCESS_MODES]
    if unknown:
        raise ProvisioningError(f"storage class {meta(storage_class)['name']} has unknown accessModes {unknown}")
    return modes


def check_access_modes(claim: Obj, storage_class: Obj) -> None:
    """Raise ProvisioningError naming the unsupported and the supported modes."""
    supported = supported_access_modes(storage_class)
    wanted = (claim.get("spec") or {}).get("accessModes") or []
    unsupported = [m for m in wanted if m not in supported]
    if unsupported:
        raise ProvisioningError(
            f"access mode(s) {', '.join(unsupported)} not supported by storage class "
            f"{meta(storage_class)['name']}; supported access modes: {', '.join(supported)}"
        )


def claim_data_source(claim: Obj) -> Obj | None:
    """``spec.dataSourceRef`` if set, else ``spec.dataSource`` (the API server mirrors them)."""
    spec = claim.get("spec") or {}
    return spec.get("dataSourceRef") or spec.get("dataSource")


def build_pv(claim: Obj, storage_class: Obj, path: Path, node_affinity_hostname: str | None = None) -> Obj:
    """The hostPath PersistentVolume for ``claim``, pre-bound to it."""
    spec = claim.get("spec") or {}
    m = meta(claim)
    pv_spec: Obj = {
        "capacity": {"storage": spec["resources"]["requests"]["storage"]},
        "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
        "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
        "storageClassName": meta(storage_class)["name"],
        "volumeMode": spec.get("volumeMode") or "Filesystem",
        "hostPath": {"path": str(path), "type": "Directory"},
        "claimRef": {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": m["namespace"],
            "name": m["name"],
            "uid": m["uid"],
        },
    }
    if storage_class.get("mountOptions"):
        pv_spec["mountOptions"] = list(storage_class["mountOptions"])
    if node_affinity_hostname:
        pv_spec["nodeAffinity"] = {
            "required": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": HOSTNAME_LABEL, "operator": "In", "values": [node_affinity_hostname]}
                        ]
                    }
                ]
            }
        }
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": pv_name_for(claim),
            "annotations": {ANN_PROVISIONED_BY: PROVISIONER},
            "labels": {"app.kubernetes.io/managed-by": "k8s-step-operator-localcluster"},
        },
        "spec": pv_spec,
    }


class Provisioner:
    """Watches claims and volumes; provisions and deletes hostPath volumes under ``<state>/pv``."""

    def __init__(
        self,
        kube: Kube,
        state_dir: Path,
        stop: threading.Event,
        locks: PathLocks,
        events: EventRecorder,
        snapshot_data_dir: Callable[[Obj], Path],
    ) -> None:
        self.kube = kube
        self.pv_root = state_dir / "pv"
        self.pv_root.mkdir(parents=True, exist_ok=True)
        self.stop = stop
        self.locks = locks
        self.events = events
        self.snapshot_data_dir = snapshot_data_dir  # VolumeSnapshotContent → its data directory
        self.queue = WorkQueue()
        self.claims = Informer(kube, "/api/v1/persistentvolumeclaims", stop, "pvcs")
        self.volumes = Informer(kube, "/api/v1/persistentvolumes", stop, "pvs")
        self.classes = Informer(kube, "/apis/storage.k8s.io/v1/storageclasses", stop, "storageclasses")
        self.claims.add_handler(self._on_claim)
        self.volumes.add_handler(lambda _t, obj: self.queue.add("pv:" + obj_key(obj)))
        self.classes.add_handler(lambda _t, _obj: self.resync())
        self._announced: set[str] = set()

    # ----------------------------------------------------------------- wiring
    @property
    def informers(self) -> list[Informer]:
        return [self.claims, self.volumes, self.classes]

    def _on_claim(self, event_type: str, claim: Obj) -> None:
        if event_type != "DELETED":
            self.queue.add("pvc:" + obj_key(claim))
        self._nudge_dependents(meta(claim).get("namespace"), "PersistentVolumeClaim", meta(claim).get("name"))

    def on_snapshot(self, _event_type: str, snapshot: Obj) -> None:
        """A VolumeSnapshot changed: retry the pending claims restoring from it."""
        self._nudge_dependents(meta(snapshot).get("namespace"), "VolumeSnapshot", meta(snapshot).get("name"))

    def _nudge_dependents(self, namespace: str | None, kind: str, name: str | None) -> None:
        for claim in self.claims.items():
            if meta(claim).get("namespace") != namespace or (claim.get("status") or {}).get("phase") != "Pending":
                continue
            source = claim_data_source(claim) or {}
            if source.get("kind") == kind and source.get("name") == name:
                self.queue.add("pvc:" + obj_key(claim))

    def resync(self) -> None:
        """Queue every known claim and volume (periodic safety net and class changes)."""
        for claim in self.claims.items():
            if (claim.get("status") or {}).get("phase") == "Pending":
                self.queue.add("pvc:" + obj_key(claim))
        for pv in self.volumes.items():
            self.queue.add("pv:" + obj_key(pv))

    def sync(self, key: str) -> None:
        """Dispatch one queue key (``pvc:ns/name`` or ``pv:name``)."""
        kind, rest = key.split(":", 1)
        if kind == "pvc":
            self.sync_claim(rest)
        else:
            self.sync_volume(rest)

    # ----------------------------------------------------------------- claims
    def _our_class(self, claim: Obj) -> Obj | None:
        name = (claim.get("spec") or {}).get("storageClassName")
        if not name:
            return None
        storage_class = self.classes.get(name) or self.kube.get_or_none(
            f"/apis/storage.k8s.io/v1/storageclasses/{name}"
        )
        if storage_class is None or storage_class.get("provisioner") != PROVISIONER:
            return None
        return storage_class

    def sync_claim(self, key: str) -> None:
        """Provision a volume for the claim ``key`` if it is ours and ready to be provisioned."""
        namespace, name = split_key(key)
        claim = self.claims.get(key)
        if claim is None or meta(claim).get("deletionTimestamp"):
            return
        if (claim.get("spec") or {}).get("volumeName") or (claim.get("status") or {}).get("phase") != "Pending":
            return
        storage_class = self._our_class(claim)
        if storage_class is None:
            return
        ann = annotations(claim)
        # Like sig-storage-lib-external-provisioner: act only once the PV controller handed the claim to us.
        if PROVISIONER not in (ann.get(ANN_STORAGE_PROVISIONER), ann.get(ANN_BETA_STORAGE_PROVISIONER)):
            return
        selected_node = ann.get(ANN_SELECTED_NODE)
        if storage_class.get("volumeBindingMode") == "WaitForFirstConsumer" and not selected_node:
            return
        pv_name = pv_name_for(claim)
        if self.volumes.get(pv_name) is not None or self.kube.get_or_none(f"/api/v1/persistentvolumes/{pv_name}"):
            return
        fresh = self.kube.get_or_none(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}")
        if (
            fresh is None
            or meta(fresh).get("uid") != meta(claim).get("uid")
            or (fresh.get("spec") or {}).get("volumeName")
        ):
            return
        claim = fresh
        selected_node = annotations(claim).get(ANN_SELECTED_NODE, selected_node)
        try:
            self._provision(claim, storage_class, pv_name, selected_node)
        except ProvisioningError as exc:
            self.events.event(claim, "Warning", "ProvisioningFailed", str(exc))
            raise Requeue(str(exc), delay=30.0) from None
        except Requeue:
            raise
        except Exception as exc:
            self.events.event(claim, "Warning", "ProvisioningFailed", f"failed to provision volume: {api_message(exc)}")
            raise

    def _provision(self, claim: Obj, storage_class: Obj, pv_name: str, selected_node: str | None) -> None:
        spec = claim.get("spec") or {}
        if (spec.get("volumeMode") or "Filesystem") != "Filesystem":
            raise ProvisioningError("volumeMode Block is not supported: hostPath volumes are directories")
        check_access_modes(claim, storage_class)
        request = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        if not request:
            raise ProvisioningError("claim has no spec.resources.requests.storage")
        key = obj_key(claim)
        if key not in self._announced:
            self._announced.add(key)
            self.events.event(
                claim, "Normal", "Provisioning", f'External provisioner is provisioning volume for claim "{key}"'
            )
        source = self._resolve_source(claim, request)
        target = self.pv_root / pv_name
        if source is not None:
            with self.locks.hold(source, target):
                remove_tree(target)  # a leftover of an attempt that died before creating the PV
                copy_tree_atomic(source, target)
        else:
            with self.locks.hold(target):
                target.mkdir(parents=True, exist_ok=True)
                target.chmod(0o777)
        hostname = self._node_hostname(selected_node) if selected_node else None
        pv = build_pv(claim, storage_class, target, hostname)
        try:
            self.kube.create("/api/v1/persistentvolumes", pv)
        except Exception as exc:
            if getattr(exc, "status", None) == 409:
                return
            raise
        self._announced.discard(key)
        log.info("provisioned %s for %s at %s", pv_name, key, target)
        self.events.event(claim, "Normal", "ProvisioningSucceeded", f"Successfully provisioned volume {pv_name}")

    def _node_hostname(self, node_name: str) -> str | None:
        """The selected node's ``kubernetes.io/hostname`` label (what PV node affinity is matched on)."""
        node = self.kube.get_or_none(f"/api/v1/nodes/{node_name}")
        labels = (meta(node).get("labels") or {}) if node else {}
        hostname = labels.get(HOSTNAME_LABEL)
        if not hostname:
            log.warning("node %s has no %s label: PV gets no node affinity", node_name, HOSTNAME_LABEL)
        return hostname

    def _resolve_source(self, claim: Obj, request: str) -> Path | None:
        """The directory to copy into the new volume, or None for an empty volume."""
        source = claim_data_source(claim)
        if not source:
            return None
        namespace = meta(claim)["namespace"]
        kind, group, name = source.get("kind"), source.get("apiGroup") or "", source.get("name")
        if source.get("namespace") not in (None, "", namespace):
            raise ProvisioningError(f"cross-namespace data source {source['namespace']}/{name} is not supported")
        if kind == "VolumeSnapshot" and group == SNAPSHOT_GROUP:
            return self._snapshot_source(namespace, name, request)
        if kind == "PersistentVolumeClaim" and group == "":
            return self._clone_source(claim, namespace, name, request)
        raise ProvisioningError(f"unsupported data source {group or 'core'}/{kind} {name!r}")

    def _snapshot_source(self, namespace: str, name: str, request: str) -> Path:
        snapshot = self.kube.get_or_none(f"/apis/{SNAPSHOT_GROUP}/v1/namespaces/{namespace}/volumesnapshots/{name}")
        if snapshot is None:
            raise ProvisioningError(f'volumesnapshot "{name}" not found')
        status = snapshot.get("status") or {}
        if meta(snapshot).get("deletionTimestamp"):
            raise ProvisioningError(f'volumesnapshot "{name}" is being deleted')
        if not status.get("readyToUse") or not status.get("boundVolumeSnapshotContentName"):
            raise Requeue(f"waiting for volumesnapshot {namespace}/{name} to be readyToUse", delay=0.5)
        restore = status.get("restoreSize")
        if restore is not None and quantity_bytes(request) < quantity_bytes(restore):
            raise ProvisioningError(
                f'requested volume size {request} is less than the restore size {restore} of volumesnapshot "{name}"'
            )
        content_name = status["boundVolumeSnapshotContentName"]
        content = self.kube.get_or_none(f"/apis/{SNAPSHOT_GROUP}/v1/volumesnapshotcontents/{content_name}")
        if content is None:
            raise ProvisioningError(f'volumesnapshotcontent "{content_name}" of volumesnapshot "{name}" not found')
        data = self.snapshot_data_dir(content)
        if not data.is_dir():
            raise ProvisioningError(f'data of volumesnapshot "{name}" is missing ({data})')
        return data

    def _clone_source(self, claim: Obj, namespace: str, name: str, request: str) -> Path:
        source = self.kube.get_or_none(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}")
        if source is None:
            raise ProvisioningError(f'source persistentvolumeclaim "{name}" not found')
        if (source.get("status") or {}).get("phase") != "Bound":
            raise Requeue(f"waiting for source claim {namespace}/{name} to be Bound", delay=0.5)
        wanted_class = (claim.get("spec") or {}).get("storageClassName")
        if (source.get("spec") or {}).get("storageClassName") != wanted_class:
            raise ProvisioningError(
                f'source persistentvolumeclaim "{name}" has storage class '
                f"{(source.get('spec') or {}).get('storageClassName')!r}, not {wanted_class!r}"
            )
        capacity = ((source.get("status") or {}).get("capacity") or {}).get("storage")
        if capacity and quantity_bytes(request) < quantity_bytes(capacity):
            raise ProvisioningError(
                f'requested volume size {request} is less than the size {capacity} of source claim "{name}"'
            )
        pv = self.kube.get_or_none(f"/api/v1/persistentvolumes/{source['spec']['volumeName']}")
        path = ((pv or {}).get("spec") or {}).get("hostPath", {}).get("path")
        if not path or not Path(path).is_dir():
            raise ProvisioningError(f'source persistentvolumeclaim "{name}" is not a local hostPath volume')
        return Path(path)

    # ---------------------------------------------------------------- volumes
    def sync_volume(self, name: str) -> None:
        """Delete a Released volume of ours whose reclaim policy is Delete, directory first."""
        pv = self.volumes.get(name)
        if pv is None or meta(pv).get("deletionTimestamp"):
            return
        if annotations(pv).get(ANN_PROVISIONED_BY) != PROVISIONER:
            return
        spec, status = pv.get("spec") or {}, pv.get("status") or {}
        if status.get("phase") != "Released" or spec.get("persistentVolumeReclaimPolicy") != "Delete":
            return
        fresh = self.kube.get_or_none(f"/api/v1/persistentvolumes/{name}")
        if fresh is None or (fresh.get("status") or {}).get("phase") != "Released":
            return
        path = Path((fresh.get("spec") or {}).get("hostPath", {}).get("path", ""))
        if is_within(path, self.pv_root):
            with self.locks.hold(path):
                remove_tree(path)
        else:
            log.warning("PV %s: hostPath %s is outside %s; leaving it on disk", name, path, self.pv_root)
        self.kube.delete(f"/api/v1/persistentvolumes/{name}")
        log.info("deleted released volume %s (%s)", name, path)

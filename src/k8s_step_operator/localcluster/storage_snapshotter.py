"""The local snapshotter: VolumeSnapshots of hostPath claims, as directory copies.

A VolumeSnapshot of a claim is taken by copying the claim's PV directory to
``<state>/snapshots/<content-name>`` and recording a cluster-scoped
VolumeSnapshotContent ``snapcontent-<snapshot uid>``; the snapshot's status then
points at it. Deletion is finalizer driven so nothing cluster-scoped outlives its
namespace: the VolumeSnapshot carries ``snapshot.storage.kubernetes.io/volumesnapshot-bound-protection``
(removed after its content was deleted, for deletionPolicy Delete) and each content
carries ``localcluster.k8s-step-operator.io/snapshot-data`` (removed after its data
directory was deleted). A periodic sweep also deletes dynamic contents whose
VolumeSnapshot is gone.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from .storage_kube import (
    EventRecorder,
    Informer,
    Kube,
    Obj,
    PathLocks,
    Requeue,
    WorkQueue,
    annotations,
    copy_tree_atomic,
    is_within,
    log,
    meta,
    now_rfc3339,
    obj_key,
    quantity_bytes,
    remove_tree,
    split_key,
)
from .storage_provisioner import PROVISIONER

GROUP_PATH = "/apis/snapshot.storage.k8s.io/v1"
SNAPSHOT_FINALIZER = "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"
CONTENT_FINALIZER = "localcluster.k8s-step-operator.io/snapshot-data"
ANN_DEFAULT_CLASS = "snapshot.storage.kubernetes.io/is-default-class"
ANN_DYNAMIC = "localcluster.k8s-step-operator.io/dynamically-created"

_BINARY_SUFFIXES = (
    ("Ei", 1 << 60),
    ("Pi", 1 << 50),
    ("Ti", 1 << 40),
    ("Gi", 1 << 30),
    ("Mi", 1 << 20),
    ("Ki", 1 << 10),
)


class SnapshotError(Exception):
    """A snapshot cannot be taken as asked; written to ``status.error`` and retried."""


def content_name_for(snapshot: Obj) -> str:
    """The VolumeSnapshotContent name of a dynamic snapshot: ``snapcontent-<snapshot uid>``."""
    return f"snapcontent-{meta(snapshot)['uid']}"


def format_bytes(size: int) -> str:
    """Bytes as the shortest exact binary-SI quantity ("1Gi", "1536Mi", "1000")."""
    for suffix, unit in _BINARY_SUFFIXES:
        if size and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def rfc3339_from_ns(nanos: int) -> str:
    """Unix nanoseconds as an RFC 3339 UTC timestamp (one-second precision)."""
    return datetime.fromtimestamp(nanos / 1e9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pick_class(requested: str | None, classes: list[Obj], driver: str = PROVISIONER) -> Obj:
    """The VolumeSnapshotClass to use: the named one, or the single default one of ``driver``."""
    if requested:
        for cls in classes:
            if meta(cls).get("name") == requested:
                return cls
        raise SnapshotError(f'volumesnapshotclass.snapshot.storage.k8s.io "{requested}" not found')
    defaults = [c for c in classes if annotations(c).get(ANN_DEFAULT_CLASS) == "true" and c.get("driver") == driver]
    if not defaults:
        raise SnapshotError(f"cannot find a default volumesnapshotclass for driver {driver}")
    if len(defaults) > 1:
        names = ", ".join(sorted(meta(c)["name"] for c in defaults))
        raise SnapshotError(f"more than one default volumesnapshotclass for driver {driver}: {names}")
    return defaults[0]


def dir_size(path: Path) -> int:
    """Total size in bytes of the regular files under ``path`` (symlinks not followed)."""
    total = 0
    for item in path.rglob("*"):
        if item.is_file() and not item.is_symlink():
            total += item.stat().st_size
    return total


class Snapshotter:
    """Watches VolumeSnapshots and VolumeSnapshotContents; copies data under ``<state>/snapshots``."""

    def __init__(
        self,
        kube: Kube,
        state_dir: Path,
        stop: threading.Event,
        locks: PathLocks,
        events: EventRecorder,
        claims: Informer,
    ) -> None:
        self.kube = kube
        self.root = state_dir / "snapshots"
        self.root.mkdir(parents=True, exist_ok=True)
        self.stop = stop
        self.locks = locks
        self.events = events
        self.queue = WorkQueue()
        self.snapshots = Informer(kube, f"{GROUP_PATH}/volumesnapshots", stop, "volumesnapshots")
        self.contents = Informer(kube, f"{GROUP_PATH}/volumesnapshotcontents", stop, "volumesnapshotcontents")
        self.classes = Informer(kube, f"{GROUP_PATH}/volumesnapshotclasses", stop, "volumesnapshotclasses")
        self.snapshots.add_handler(lambda _t, obj: self.queue.add("vs:" + obj_key(obj)))
        self.contents.add_handler(self._on_content)
        self.classes.add_handler(lambda _t, _obj: self.resync(contents=False))
        claims.add_handler(self._on_claim)

    @property
    def informers(self) -> list[Informer]:
        return [self.snapshots, self.contents, self.classes]

    # ----------------------------------------------------------------- wiring
    def _on_content(self, event_type: str, content: Obj) -> None:
        if event_type != "DELETED":
            self.queue.add("vsc:" + obj_key(content))
        ref = (content.get("spec") or {}).get("volumeSnapshotRef") or {}
        if ref.get("namespace") and ref.get("name"):
            self.queue.add(f"vs:{ref['namespace']}/{ref['name']}")

    def _on_claim(self, _event_type: str, claim: Obj) -> None:
        """A claim appeared or changed: retry the snapshots waiting for it."""
        m = meta(claim)
        for snapshot in self.snapshots.items():
            source = (snapshot.get("spec") or {}).get("source") or {}
            if meta(snapshot).get("namespace") == m.get("namespace") and source.get(
                "persistentVolumeClaimName"
            ) == m.get("name"):
                if not (snapshot.get("status") or {}).get("readyToUse"):
                    self.queue.add("vs:" + obj_key(snapshot))

    def resync(self, contents: bool = True) -> None:
        """Queue every snapshot (and content) again: the periodic safety net."""
        for snapshot in self.snapshots.items():
            self.queue.add("vs:" + obj_key(snapshot))
        if contents:
            for content in self.contents.items():
                self.queue.add("vsc:" + obj_key(content))

    def sync(self, key: str) -> None:
        """Dispatch one queue key (``vs:ns/name`` or ``vsc:name``)."""
        kind, rest = key.split(":", 1)
        if kind == "vs":
            self.sync_snapshot(rest)
        else:
            self.sync_content(rest)

    def data_dir(self, content: Obj) -> Path:
        """Where a content's data lives: ``<state>/snapshots/<snapshot handle>``."""
        handle = (
            (content.get("status") or {}).get("snapshotHandle")
            or ((content.get("spec") or {}).get("source") or {}).get("snapshotHandle")
            or meta(content)["name"]
        )
        path = self.root / handle
        if "/" in handle or not is_within(path, self.root):
            raise SnapshotError(f"snapshot handle {handle!r} is not a local snapshot name")
        return path

    # -------------------------------------------------------------- snapshots
    def _snapshot_path(self, namespace: str, name: str) -> str:
        return f"{GROUP_PATH}/namespaces/{namespace}/volumesnapshots/{name}"

    def sync_snapshot(self, key: str) -> None:
        """Bring one VolumeSnapshot towards readyToUse (or finish deleting it)."""
        namespace, name = split_key(key)
        snapshot = self.snapshots.get(key)
        if snapshot is None:
            return
        if not (snapshot.get("status") or {}).get("readyToUse"):
            # The cache may lag behind our own last write: act on the current object.
            snapshot = self.kube.get_or_none(self._snapshot_path(namespace or "", name))
            if snapshot is None:
                return
        if meta(snapshot).get("deletionTimestamp"):
            self._finalize_snapshot(snapshot)
            return
        status = snapshot.get("status") or {}
        if status.get("readyToUse") and status.get("boundVolumeSnapshotContentName"):
            return
        source = (snapshot.get("spec") or {}).get("source") or {}
        try:
            if source.get("persistentVolumeClaimName"):
                self._snapshot_claim(snapshot, source["persistentVolumeClaimName"])
            elif source.get("volumeSnapshotContentName"):
                self._bind_existing(snapshot, source["volumeSnapshotContentName"])
        except SnapshotError as exc:
            self._set_error(snapshot, str(exc))
            raise Requeue(str(exc)) from None

    def _add_finalizer(self, snapshot: Obj) -> Obj:
        m = meta(snapshot)
        finalizers = list(m.get("finalizers") or [])
        if SNAPSHOT_FINALIZER in finalizers:
            return snapshot
        patch = {"metadata": {"finalizers": finalizers + [SNAPSHOT_FINALIZER], "resourceVersion": m["resourceVersion"]}}
        return self.kube.merge_patch(self._snapshot_path(m["namespace"], m["name"]), patch)

    def _set_status(self, snapshot: Obj, status: Obj) -> None:
        m = meta(snapshot)
        self.kube.merge_patch(self._snapshot_path(m["namespace"], m["name"]) + "/status", {"status": status})

    def _set_error(self, snapshot: Obj, message: str) -> None:
        status = snapshot.get("status") or {}
        if (status.get("error") or {}).get("message") == message and status.get("readyToUse") is False:
            return
        self._set_status(snapshot, {"readyToUse": False, "error": {"message": message, "time": now_rfc3339()}})
        self.events.event(snapshot, "Warning", "SnapshotCreationFailed", message)

    def _resolve_class(self, snapshot: Obj) -> Obj:
        requested = (snapshot.get("spec") or {}).get("volumeSnapshotClassName")
        classes = self.classes.items()
        if requested and not any(meta(c).get("name") == requested for c in classes):
            fresh = self.kube.get_or_none(f"{GROUP_PATH}/volumesnapshotclasses/{requested}")
            classes = classes + ([fresh] if fresh else [])
        return pick_class(requested, classes)

    def _snapshot_claim(self, snapshot: Obj, claim_name: str) -> None:
        m = meta(snapshot)
        namespace = m["namespace"]
        cls = self._resolve_class(snapshot)
        if cls.get("driver") != PROVISIONER:
            return  # another driver's snapshot
        if not (snapshot.get("spec") or {}).get("volumeSnapshotClassName"):
            # As upstream does: record the default class the snapshot was taken with.
            snapshot = self.kube.merge_patch(
                self._snapshot_path(namespace, m["name"]), {"spec": {"volumeSnapshotClassName": meta(cls)["name"]}}
            )
        snapshot = self._add_finalizer(snapshot)
        claim = self.kube.get_or_none(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim_name}")
        if claim is None:
            raise SnapshotError(f'persistentvolumeclaim "{claim_name}" not found')
        if (claim.get("status") or {}).get("phase") != "Bound":
            if (snapshot.get("status") or {}).get("readyToUse") is not False:
                self._set_status(snapshot, {"readyToUse": False})
            raise Requeue(f"waiting for claim {namespace}/{claim_name} to be Bound", delay=0.5)
        pv = self.kube.get_or_none(f"/api/v1/persistentvolumes/{claim['spec']['volumeName']}")
        source_dir = ((pv or {}).get("spec") or {}).get("hostPath", {}).get("path")
        if not source_dir or not Path(source_dir).is_dir():
            raise SnapshotError(f'persistentvolumeclaim "{claim_name}" is not backed by a local hostPath directory')
        content_name = content_name_for(snapshot)
        content_path = f"{GROUP_PATH}/volumesnapshotcontents/{content_name}"
        content = self.kube.get_or_none(content_path)
        data = self.root / content_name
        if content is None or not (content.get("status") or {}).get("readyToUse"):
            taken = time.time_ns()
            with self.locks.hold(Path(source_dir), data):
                remove_tree(data)
                copy_tree_atomic(Path(source_dir), data)
            if content is None:
                content = self.kube.create(
                    f"{GROUP_PATH}/volumesnapshotcontents", self._build_content(snapshot, cls, pv, content_name)
                )
            restore_bytes = self._restore_bytes(claim)
            content = self.kube.merge_patch(
                content_path + "/status",
                {
                    "status": {
                        "snapshotHandle": content_name,
                        "readyToUse": True,
                        "restoreSize": restore_bytes,
                        "creationTime": taken,
                        "error": None,
                    }
                },
            )
            self.events.event(snapshot, "Normal", "SnapshotCreated", f"Snapshot {obj_key(snapshot)} was taken")
        content_status = content.get("status") or {}
        restore = ((claim.get("status") or {}).get("capacity") or {}).get("storage") or format_bytes(
            int(content_status.get("restoreSize") or 0)
        )
        self._set_status(
            snapshot,
            {
                "boundVolumeSnapshotContentName": content_name,
                "creationTime": rfc3339_from_ns(int(content_status.get("creationTime") or time.time_ns())),
                "readyToUse": True,
                "restoreSize": restore,
                "error": None,
            },
        )
        self.events.event(snapshot, "Normal", "SnapshotReady", f"Snapshot {obj_key(snapshot)} is ready to use")
        log.info("snapshot %s ready (%s, %s)", obj_key(snapshot), content_name, restore)

    @staticmethod
    def _restore_bytes(claim: Obj) -> int:
        capacity = ((claim.get("status") or {}).get("capacity") or {}).get("storage")
        request = (((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
        return quantity_bytes(capacity or request)

    @staticmethod
    def _build_content(snapshot: Obj, cls: Obj, pv: Obj, name: str) -> Obj:
        m = meta(snapshot)
        return {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshotContent",
            "metadata": {
                "name": name,
                "annotations": {ANN_DYNAMIC: "true"},
                "finalizers": [CONTENT_FINALIZER],
            },
            "spec": {
                "volumeSnapshotRef": {
                    "apiVersion": "snapshot.storage.k8s.io/v1",
                    "kind": "VolumeSnapshot",
                    "namespace": m["namespace"],
                    "name": m["name"],
                    "uid": m["uid"],
                },
                "deletionPolicy": cls.get("deletionPolicy") or "Delete",
                "driver": PROVISIONER,
                "source": {"volumeHandle": meta(pv)["name"]},
                "sourceVolumeMode": (pv.get("spec") or {}).get("volumeMode") or "Filesystem",
                "volumeSnapshotClassName": meta(cls)["name"],
            },
        }

    def _bind_existing(self, snapshot: Obj, content_name: str) -> None:
        """A snapshot standing for a pre-existing VolumeSnapshotContent."""
        m = meta(snapshot)
        content_path = f"{GROUP_PATH}/volumesnapshotcontents/{content_name}"
        content = self.kube.get_or_none(content_path)
        if content is None:
            raise SnapshotError(f'volumesnapshotcontent "{content_name}" not found')
        ref = (content.get("spec") or {}).get("volumeSnapshotRef") or {}
        if (ref.get("namespace"), ref.get("name")) != (m["namespace"], m["name"]):
            raise SnapshotError(
                f'volumesnapshotcontent "{content_name}" is bound to {ref.get("namespace")}/{ref.get("name")}'
            )
        if ref.get("uid") and ref["uid"] != m["uid"]:
            raise SnapshotError(
                f'volumesnapshotcontent "{content_name}" is bound to another snapshot (uid {ref["uid"]})'
            )
        if content.get("spec", {}).get("driver") != PROVISIONER:
            return
        snapshot = self._add_finalizer(snapshot)
        if not ref.get("uid"):
            self.kube.merge_patch(content_path, {"spec": {"volumeSnapshotRef": {**ref, "uid": m["uid"]}}})
        status = content.get("status") or {}
        if not status.get("readyToUse"):
            message = (status.get("error") or {}).get("message")
            if message:
                raise SnapshotError(message)
            raise Requeue(f"waiting for volumesnapshotcontent {content_name} to be ready", delay=0.5)
        self._set_status(
            snapshot,
            {
                "boundVolumeSnapshotContentName": content_name,
                "creationTime": rfc3339_from_ns(int(status.get("creationTime") or time.time_ns())),
                "readyToUse": True,
                "restoreSize": format_bytes(int(status.get("restoreSize") or 0)),
                "error": None,
            },
        )

    def _finalize_snapshot(self, snapshot: Obj) -> None:
        """A VolumeSnapshot is being deleted: delete its content (policy Delete), then drop our finalizer."""
        m = meta(snapshot)
        finalizers = list(m.get("finalizers") or [])
        if SNAPSHOT_FINALIZER not in finalizers:
            return
        status = snapshot.get("status") or {}
        source = (snapshot.get("spec") or {}).get("source") or {}
        names = {
            status.get("boundVolumeSnapshotContentName"),
            source.get("volumeSnapshotContentName"),
            content_name_for(snapshot),
        } - {None, ""}
        for name in names:
            content = self.kube.get_or_none(f"{GROUP_PATH}/volumesnapshotcontents/{name}")
            if content is None:
                continue
            ref = (content.get("spec") or {}).get("volumeSnapshotRef") or {}
            bound_here = (ref.get("namespace"), ref.get("name")) == (m["namespace"], m["name"]) and ref.get("uid") in (
                None,
                "",
                m["uid"],
            )
            if bound_here and (content.get("spec") or {}).get("deletionPolicy") == "Delete":
                self.kube.delete(f"{GROUP_PATH}/volumesnapshotcontents/{name}")
                log.info("deleting content %s of snapshot %s", name, obj_key(snapshot))
        finalizers.remove(SNAPSHOT_FINALIZER)
        self.kube.merge_patch(
            self._snapshot_path(m["namespace"], m["name"]),
            {"metadata": {"finalizers": finalizers, "resourceVersion": m["resourceVersion"]}},
        )

    # --------------------------------------------------------------- contents
    def sync_content(self, name: str) -> None:
        """Remove a deleted content's data; mark pre-provisioned contents ready; sweep orphans."""
        content = self.contents.get(name)
        if content is None:
            return
        m = meta(content)
        spec = content.get("spec") or {}
        if spec.get("driver") != PROVISIONER:
            return
        if m.get("deletionTimestamp"):
            finalizers = list(m.get("finalizers") or [])
            if CONTENT_FINALIZER not in finalizers:
                return
            if spec.get("deletionPolicy") == "Delete":
                data = self.data_dir(content)
                with self.locks.hold(data):
                    remove_tree(data)
                log.info("removed snapshot data %s", data)
            finalizers.remove(CONTENT_FINALIZER)
            self.kube.merge_patch(
                f"{GROUP_PATH}/volumesnapshotcontents/{name}",
                {"metadata": {"finalizers": finalizers, "resourceVersion": m["resourceVersion"]}},
            )
            return
        if CONTENT_FINALIZER not in (m.get("finalizers") or []):
            # Pre-provisioned contents of our driver: their data goes with them too (policy Delete).
            finalizers = list(m.get("finalizers") or []) + [CONTENT_FINALIZER]
            self.kube.merge_patch(
                f"{GROUP_PATH}/volumesnapshotcontents/{name}",
                {"metadata": {"finalizers": finalizers, "resourceVersion": m["resourceVersion"]}},
            )
            return  # the update comes back through the watch
        if annotations(content).get(ANN_DYNAMIC) == "true":
            self._sweep_orphan(content)
        elif (spec.get("source") or {}).get("snapshotHandle") and not (content.get("status") or {}).get("readyToUse"):
            self._ready_preprovisioned(content)

    def _sweep_orphan(self, content: Obj) -> None:
        """Delete a dynamic content (policy Delete) whose VolumeSnapshot no longer exists."""
        spec = content.get("spec") or {}
        ref = spec.get("volumeSnapshotRef") or {}
        if spec.get("deletionPolicy") != "Delete" or not ref.get("uid"):
            return
        snapshot = self.kube.get_or_none(self._snapshot_path(ref["namespace"], ref["name"]))
        if snapshot is None or meta(snapshot).get("uid") != ref["uid"]:
            log.info(
                "deleting orphaned content %s (snapshot %s/%s gone)",
                meta(content)["name"],
                ref["namespace"],
                ref["name"],
            )
            self.kube.delete(f"{GROUP_PATH}/volumesnapshotcontents/{meta(content)['name']}")

    def _ready_preprovisioned(self, content: Obj) -> None:
        """A user-made content naming a snapshot handle: ready if the data directory exists."""
        name = meta(content)["name"]
        try:
            data = self.data_dir(content)
        except SnapshotError as exc:
            status: Obj = {"readyToUse": False, "error": {"message": str(exc), "time": now_rfc3339()}}
        else:
            if data.is_dir():
                status = {
                    "snapshotHandle": data.name,
                    "readyToUse": True,
                    "restoreSize": dir_size(data),
                    "creationTime": int(data.stat().st_mtime * 1e9),
                    "error": None,
                }
            else:
                status = {
                    "readyToUse": False,
                    "error": {"message": f"snapshot data {data} not found", "time": now_rfc3339()},
                }
        old_error = ((content.get("status") or {}).get("error") or {}).get("message")
        if not status.get("readyToUse") and old_error == status["error"]["message"]:
            raise Requeue("pre-provisioned snapshot data still missing")
        self.kube.merge_patch(f"{GROUP_PATH}/volumesnapshotcontents/{name}/status", {"status": status})

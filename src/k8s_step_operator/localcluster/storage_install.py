"""Install the storage manifests: snapshot CRDs, StorageClasses, the default VolumeSnapshotClass.

Idempotent: CRDs and VolumeSnapshotClasses are created or replaced; a StorageClass
whose immutable fields differ from the manifest is deleted and created again.
"""

from __future__ import annotations

import threading
import time
from importlib import resources
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

from .storage_kube import Kube, Obj, log, meta

MANIFEST_PACKAGE = "k8s_step_operator.localcluster.manifests"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
STORAGECLASS_PATH = "/apis/storage.k8s.io/v1/storageclasses"
SNAPSHOTCLASS_PATH = "/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses"

# StorageClass fields the API server refuses to change.
_IMMUTABLE_CLASS_FIELDS = ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode", "mountOptions")


def load_manifests() -> list[Obj]:
    """Every document of every ``manifests/*.yaml``, CRDs first."""
    docs: list[Obj] = []
    folder = resources.files(MANIFEST_PACKAGE)
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            docs.extend(d for d in yaml.safe_load_all(entry.read_text()) if d)
    return sorted(docs, key=lambda d: 0 if d.get("kind") == "CustomResourceDefinition" else 1)


def _collection_path(doc: Obj) -> str:
    kind = doc.get("kind")
    if kind == "CustomResourceDefinition":
        return CRD_PATH
    if kind == "StorageClass":
        return STORAGECLASS_PATH
    if kind == "VolumeSnapshotClass":
        return SNAPSHOTCLASS_PATH
    raise ValueError(f"no install rule for kind {kind!r}")


def _differs(current: Obj, wanted: Obj, fields: tuple[str, ...]) -> bool:
    return any((current.get(f) or None) != (wanted.get(f) or None) for f in fields)


def apply(kube: Kube, doc: Obj) -> Obj:
    """Create ``doc`` or bring the existing object in line with it."""
    collection = _collection_path(doc)
    name = doc["metadata"]["name"]
    path = f"{collection}/{name}"
    current = kube.get_or_none(path)
    if current is None:
        try:
            return kube.create(collection, doc)
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = kube.get(path)
    if doc["kind"] == "StorageClass" and _differs(current, doc, _IMMUTABLE_CLASS_FIELDS):
        log.info("replacing StorageClass %s (immutable fields changed)", name)
        kube.delete(path)
        return kube.create(collection, doc)
    body: dict[str, Any] = dict(doc)
    body["metadata"] = {**doc["metadata"], "resourceVersion": meta(current)["resourceVersion"]}
    return kube.replace(path, body)


def crd_established(crd: Obj) -> bool:
    """Whether the CRD's Established and NamesAccepted conditions are True."""
    conditions = {c.get("type"): c.get("status") for c in (crd.get("status") or {}).get("conditions") or []}
    return conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True"


def install(kube: Kube, stop: threading.Event, timeout: float = 60.0) -> None:
    """Apply every manifest, waiting for the CRDs to be Established before anything that uses them."""
    docs = load_manifests()
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    for doc in crds:
        _retry(lambda d=doc: apply(kube, d), stop, timeout, f"apply CRD {doc['metadata']['name']}")
    for doc in crds:
        name = doc["metadata"]["name"]
        _retry(lambda n=name: crd_established(kube.get(f"{CRD_PATH}/{n}")), stop, timeout, f"CRD {name} Established")
    for doc in docs:
        if doc["kind"] != "CustomResourceDefinition":
            # Right after Established the new resource can still 404 for a moment: retry.
            _retry(lambda d=doc: apply(kube, d), stop, timeout, f"apply {doc['kind']} {doc['metadata']['name']}")


def _retry(action, stop: threading.Event, timeout: float, what: str) -> None:
    """Call ``action`` until it returns something truthy (None counts as done); raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    last: Exception | None = None
    while not stop.is_set():
        try:
            result = action()
            if result is None or result:
                return
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out: {what}; last error: {last}")
        stop.wait(delay)
        delay = min(delay * 2, 1.0)
    raise InterruptedError(f"stopped while waiting for: {what}")

"""Local storage: StorageClasses, the hostPath provisioner, snapshot CRDs and the snapshotter.

The first half are pure unit tests of the helpers; the rest run against the session's
local cluster (fixtures ``api_client`` and ``namespace``). Files are written straight
into a PV's hostPath directory; the pod round trip runs busybox pods on the real nodes.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from k8s_step_operator.kube import rest
from k8s_step_operator.localcluster.images import current
from k8s_step_operator.localcluster.storage_install import crd_established, load_manifests
from k8s_step_operator.localcluster.storage_kube import (
    Informer,
    PathLocks,
    WorkQueue,
    copy_tree_atomic,
    is_within,
    obj_key,
    quantity_bytes,
    split_key,
)
from k8s_step_operator.localcluster.storage_provisioner import (
    PROVISIONER,
    ProvisioningError,
    build_pv,
    check_access_modes,
    claim_data_source,
    supported_access_modes,
)
from k8s_step_operator.localcluster.storage_snapshotter import SnapshotError, format_bytes, pick_class

BUSYBOX = current("busybox")

GROUP, VERSION = "snapshot.storage.k8s.io", "v1"


# =========================================================== unit tests (no cluster)
def test_quantity_bytes() -> None:
    assert quantity_bytes("1Gi") == 1 << 30
    assert quantity_bytes("500M") == 500_000_000
    assert quantity_bytes("1.5Gi") == 3 << 29
    assert quantity_bytes(2048) == 2048
    assert quantity_bytes("100m") == 1  # fractions round up
    assert quantity_bytes(None) == 0


def test_format_bytes() -> None:
    assert format_bytes(1 << 30) == "1Gi"
    assert format_bytes(3 << 29) == "1536Mi"
    assert format_bytes(1000) == "1000"
    assert format_bytes(0) == "0"


def test_keys() -> None:
    assert obj_key({"metadata": {"name": "a", "namespace": "n"}}) == "n/a"
    assert obj_key({"metadata": {"name": "pv"}}) == "pv"
    assert split_key("n/a") == ("n", "a")
    assert split_key("pv") == (None, "pv")


def _class(name: str, **params: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "provisioner": PROVISIONER, "parameters": params, "reclaimPolicy": "Delete"}


def _claim(modes: list[str], size: str = "1Gi", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "c", "namespace": "n", "uid": "u-1"},
        "spec": {"accessModes": modes, "resources": {"requests": {"storage": size}}, **spec},
    }


def test_access_modes() -> None:
    assert supported_access_modes(_class("a")) == ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]
    rwo = _class("local-rwo", accessModes="ReadWriteOnce")
    assert supported_access_modes(rwo) == ["ReadWriteOnce"]
    check_access_modes(_claim(["ReadWriteOnce"]), rwo)
    with pytest.raises(ProvisioningError) as err:
        check_access_modes(_claim(["ReadWriteMany", "ReadWriteOnce"]), rwo)
    message = str(err.value)
    assert "ReadWriteMany" in message and "supported access modes: ReadWriteOnce" in message
    with pytest.raises(ProvisioningError):
        supported_access_modes(_class("bad", accessModes="ReadWriteSometimes"))


def test_build_pv() -> None:
    pv = build_pv(_claim(["ReadWriteMany"], "2Gi"), _class("standard"), Path("/x/pv/pvc-u-1"), "node-a")
    assert pv["metadata"]["name"] == "pvc-u-1"
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == PROVISIONER
    spec = pv["spec"]
    assert spec["capacity"] == {"storage": "2Gi"}
    assert spec["accessModes"] == ["ReadWriteMany"]
    assert spec["hostPath"]["path"] == "/x/pv/pvc-u-1"
    assert spec["claimRef"] == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": "n",
        "name": "c",
        "uid": "u-1",
    }
    assert spec["persistentVolumeReclaimPolicy"] == "Delete" and spec["storageClassName"] == "standard"
    term = spec["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert term == {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-a"]}
    assert "nodeAffinity" not in build_pv(_claim(["ReadWriteOnce"]), _class("s"), Path("/p"))["spec"]


def test_claim_data_source_prefers_ref() -> None:
    ref = {"apiGroup": GROUP, "kind": "VolumeSnapshot", "name": "b"}
    assert claim_data_source(_claim([], dataSource={"kind": "X", "name": "a"}, dataSourceRef=ref)) == ref
    assert claim_data_source(_claim([])) is None


def test_pick_class() -> None:
    default = {
        "metadata": {"name": "d", "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}},
        "driver": PROVISIONER,
    }
    other = {"metadata": {"name": "o"}, "driver": PROVISIONER}
    assert pick_class(None, [other, default]) is default
    assert pick_class("o", [other, default]) is other
    with pytest.raises(SnapshotError, match='volumesnapshotclass.snapshot.storage.k8s.io "nope" not found'):
        pick_class("nope", [other, default])
    with pytest.raises(SnapshotError, match="cannot find a default"):
        pick_class(None, [other])
    twin = {**default, "metadata": {**default["metadata"], "name": "d2"}}
    with pytest.raises(SnapshotError, match="more than one default"):
        pick_class(None, [default, twin])


def test_copy_tree_atomic_keeps_symlinks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_text("data")
    os.symlink("sub/f.txt", src / "link")
    copy_tree_atomic(src, tmp_path / "dst")
    assert (tmp_path / "dst" / "link").is_symlink()
    assert os.readlink(tmp_path / "dst" / "link") == "sub/f.txt"
    assert (tmp_path / "dst" / "sub" / "f.txt").read_text() == "data"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(OSError):
        copy_tree_atomic(src, tmp_path / "dst")  # never merges into an existing directory


def test_is_within() -> None:
    assert is_within(Path("/a/pv/x"), Path("/a/pv"))
    assert not is_within(Path("/a/pv"), Path("/a/pv"))
    assert not is_within(Path("/a/pv/../etc"), Path("/a/pv"))


def test_work_queue_dedupes_and_delays() -> None:
    queue = WorkQueue(base_delay=0.05, max_delay=0.1)
    queue.add("a")
    queue.add("a")
    assert queue.get(0.1) == "a"
    assert queue.get(0.05) is None
    queue.add("a")  # while active: processed again after done()
    queue.done("a")
    assert queue.get(0.1) == "a"
    queue.done("a")
    queue.add_after("b", 0.1)
    assert queue.get(0.02) is None
    assert queue.get(0.5) == "b"
    queue.done("b")
    assert queue.retry("b") == 0.05 and queue.retry("b") == 0.1 and queue.retry("b") == 0.1


def test_path_locks_serialize() -> None:
    locks, order = PathLocks(), []

    def hold(tag: str) -> None:
        with locks.hold(Path("/v/b"), Path("/v/a")):
            order.append(tag + "+")
            time.sleep(0.05)
            order.append(tag + "-")

    threads = [threading.Thread(target=hold, args=(t,)) for t in "xy"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order[0][0] == order[1][0] and order[2][0] == order[3][0]


class _ScriptedKube:
    """Stands in for Kube in Informer tests: scripted lists and watch streams."""

    def __init__(self, lists: list[dict], watches: list[list[dict] | Exception], done: threading.Event) -> None:
        self.lists, self.watches, self.done, self.calls = lists, watches, done, []

    def get(self, path: str) -> dict:
        self.calls.append(("list", None))
        return self.lists.pop(0)

    def watch(self, path: str, resource_version: str):
        self.calls.append(("watch", resource_version))
        step = self.watches.pop(0) if self.watches else []
        if isinstance(step, Exception):
            raise step
        if not self.watches and not self.lists:
            self.done.set()  # script exhausted: stop the informer
        yield from ((event["type"], event["object"]) for event in step)


def _obj(name: str, rv: str) -> dict:
    return {"metadata": {"name": name, "namespace": "n", "resourceVersion": rv}}


def test_informer_resumes_and_relists_on_gone() -> None:
    stop = threading.Event()
    kube = _ScriptedKube(
        lists=[
            {"metadata": {"resourceVersion": "10"}, "items": [_obj("a", "9"), _obj("b", "10")]},
            {"metadata": {"resourceVersion": "30"}, "items": [_obj("a", "25")]},
        ],
        watches=[
            [
                {"type": "MODIFIED", "object": _obj("a", "11")},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}},
            ],
            ConnectionError("connection reset"),
            rest.Gone("too old resource version"),
            [],
        ],
        done=stop,
    )
    informer = Informer(kube, "/api/v1/things", stop)  # type: ignore[arg-type]
    seen: list[tuple[str, str]] = []
    informer.add_handler(lambda kind, obj: seen.append((kind, obj["metadata"]["name"])))
    informer.start()
    assert stop.wait(10), "informer did not finish its script"
    informer._thread.join(5)  # type: ignore[union-attr]
    # resumed from the bookmark after the disconnect, relisted after 410, watched from the new list
    assert kube.calls == [
        ("list", None),
        ("watch", "10"),
        ("watch", "15"),
        ("watch", "15"),
        ("list", None),
        ("watch", "30"),
    ]
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b"), ("MODIFIED", "a")]
    assert [o["metadata"]["name"] for o in informer.items()] == ["a"]


def test_manifests() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in load_manifests()}
    crds = {name: d for (kind, name), d in docs.items() if kind == "CustomResourceDefinition"}
    assert set(crds) == {f"{p}.{GROUP}" for p in ("volumesnapshots", "volumesnapshotcontents", "volumesnapshotclasses")}
    short = {d["spec"]["names"]["kind"]: d["spec"]["names"]["shortNames"] for d in crds.values()}
    assert (
        "vs" in short["VolumeSnapshot"]
        and "vsc" in short["VolumeSnapshotContent"]
        and "vsclass" in short["VolumeSnapshotClass"]
    )
    scopes = {d["spec"]["names"]["kind"]: d["spec"]["scope"] for d in crds.values()}
    assert scopes == {
        "VolumeSnapshot": "Namespaced",
        "VolumeSnapshotContent": "Cluster",
        "VolumeSnapshotClass": "Cluster",
    }
    for crd in crds.values():
        (version,) = crd["spec"]["versions"]
        assert version["name"] == "v1" and version["served"] and version["storage"]
    columns = [c["name"] for c in crds[f"volumesnapshots.{GROUP}"]["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns[:4] == ["ReadyToUse", "SourcePVC", "SourceSnapshotContent", "RestoreSize"]
    assert (
        docs[("StorageClass", "standard")]["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"]
        == "true"
    )
    assert docs[("VolumeSnapshotClass", "local-snapshots")]["driver"] == PROVISIONER
    # YAML round trip keeps the CEL rules intact.
    rules = yaml.safe_dump(crds[f"volumesnapshots.{GROUP}"])
    assert "has(self.persistentVolumeClaimName) != has(self.volumeSnapshotContentName)" in rules


def test_crd_established() -> None:
    ok = {
        "status": {
            "conditions": [{"type": "Established", "status": "True"}, {"type": "NamesAccepted", "status": "True"}]
        }
    }
    assert crd_established(ok)
    assert not crd_established({"status": {"conditions": [{"type": "Established", "status": "False"}]}})
    assert not crd_established({})


# =========================================================== cluster tests
def wait_for(
    predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition", interval: float = 0.1
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def events_for(core: client.CoreV1Api, namespace: str, name: str) -> list[client.CoreV1Event]:
    return core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items


def make_claim(
    core: client.CoreV1Api,
    namespace: str,
    name: str,
    storage_class: str | None = "standard",
    size: str = "1Gi",
    modes: tuple[str, ...] = ("ReadWriteOnce",),
    data_source: dict[str, str] | None = None,
) -> None:
    spec: dict[str, Any] = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    if data_source:
        spec["dataSource"] = data_source
    core.create_namespaced_persistent_volume_claim(namespace, {"metadata": {"name": name}, "spec": spec})


def wait_bound(
    core: client.CoreV1Api, namespace: str, name: str, timeout: float = 20.0
) -> client.V1PersistentVolumeClaim:
    def bound() -> client.V1PersistentVolumeClaim | None:
        claim = core.read_namespaced_persistent_volume_claim(name, namespace)
        return claim if claim.status.phase == "Bound" else None

    return wait_for(bound, timeout, f"claim {namespace}/{name} Bound")


def volume_dir(core: client.CoreV1Api, claim: client.V1PersistentVolumeClaim) -> Path:
    return Path(core.read_persistent_volume(claim.spec.volume_name).spec.host_path.path)


def make_snapshot(
    custom: client.CustomObjectsApi, namespace: str, name: str, source: dict[str, str], cls: str | None = None
) -> dict:
    spec: dict[str, Any] = {"source": source}
    if cls:
        spec["volumeSnapshotClassName"] = cls
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VolumeSnapshot", "metadata": {"name": name}, "spec": spec}
    return custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "volumesnapshots", body)


def get_snapshot(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict:
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "volumesnapshots", name)


def wait_snapshot_ready(custom: client.CustomObjectsApi, namespace: str, name: str, timeout: float = 20.0) -> dict:
    def ready() -> dict | None:
        snapshot = get_snapshot(custom, namespace, name)
        return snapshot if (snapshot.get("status") or {}).get("readyToUse") else None

    return wait_for(ready, timeout, f"snapshot {namespace}/{name} readyToUse")


def get_content(custom: client.CustomObjectsApi, name: str) -> dict | None:
    try:
        return custom.get_cluster_custom_object(GROUP, VERSION, "volumesnapshotcontents", name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def read_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.mark.cluster
def test_storage_classes(api_client: client.ApiClient) -> None:
    classes = {c.metadata.name: c for c in client.StorageV1Api(api_client).list_storage_class().items}
    defaults = [
        name
        for name, c in classes.items()
        if (c.metadata.annotations or {}).get("storageclass.kubernetes.io/is-default-class") == "true"
    ]
    assert defaults == ["standard"]
    standard = classes["standard"]
    assert (standard.provisioner, standard.volume_binding_mode, standard.reclaim_policy) == (
        PROVISIONER,
        "Immediate",
        "Delete",
    )
    assert standard.allow_volume_expansion is False
    assert classes["local-wffc"].volume_binding_mode == "WaitForFirstConsumer"
    assert classes["local-rwo"].parameters == {"accessModes": "ReadWriteOnce"}
    snapshot_classes = client.CustomObjectsApi(api_client).list_cluster_custom_object(
        GROUP, VERSION, "volumesnapshotclasses"
    )
    local = [c for c in snapshot_classes["items"] if c["metadata"]["name"] == "local-snapshots"]
    assert local and local[0]["driver"] == PROVISIONER and local[0]["deletionPolicy"] == "Delete"
    assert local[0]["metadata"]["annotations"]["snapshot.storage.kubernetes.io/is-default-class"] == "true"


@pytest.mark.cluster
def test_claim_on_default_class_binds_to_hostpath_volume(core: client.CoreV1Api, namespace: str) -> None:
    make_claim(core, namespace, "data", storage_class=None, modes=("ReadWriteMany",), size="2Gi")
    claim = wait_bound(core, namespace, "data")
    assert claim.spec.storage_class_name == "standard"  # the DefaultStorageClass admission picked ours
    assert claim.status.capacity == {"storage": "2Gi"}
    pv = core.read_persistent_volume(claim.spec.volume_name)
    assert pv.spec.host_path is not None and Path(pv.spec.host_path.path).is_dir()
    assert pv.metadata.annotations["pv.kubernetes.io/provisioned-by"] == PROVISIONER
    assert (pv.spec.claim_ref.namespace, pv.spec.claim_ref.name, pv.spec.claim_ref.uid) == (
        namespace,
        "data",
        claim.metadata.uid,
    )
    assert pv.spec.access_modes == ["ReadWriteMany"] and pv.spec.persistent_volume_reclaim_policy == "Delete"
    reasons = wait_for(
        lambda: {e.reason for e in events_for(core, namespace, "data")} >= {"Provisioning", "ProvisioningSucceeded"}
        or None
    )
    assert reasons


@pytest.mark.cluster
def test_rwx_claim_on_rwo_class_fails_with_event(core: client.CoreV1Api, namespace: str) -> None:
    make_claim(core, namespace, "shared", storage_class="local-rwo", modes=("ReadWriteMany",))

    def failed() -> list[client.CoreV1Event]:
        return [e for e in events_for(core, namespace, "shared") if e.reason == "ProvisioningFailed"]

    event, *_ = wait_for(failed, what="ProvisioningFailed event")
    assert event.type == "Warning"
    assert "ReadWriteMany" in event.message and "supported access modes: ReadWriteOnce" in event.message
    time.sleep(0.5)
    assert core.read_namespaced_persistent_volume_claim("shared", namespace).status.phase == "Pending"


def _schedulable_node(core: client.CoreV1Api) -> str | None:
    for node in core.list_node().items:
        ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
        if ready and not node.spec.unschedulable and not node.spec.taints:
            return node.metadata.name
    return None


@pytest.mark.cluster
def test_wait_for_first_consumer(core: client.CoreV1Api, namespace: str) -> None:
    make_claim(core, namespace, "late", storage_class="local-wffc")
    wait_for(
        lambda: any(e.reason == "WaitForFirstConsumer" for e in events_for(core, namespace, "late")),
        what="WaitForFirstConsumer event",
    )
    time.sleep(1.0)
    claim = core.read_namespaced_persistent_volume_claim("late", namespace)
    assert claim.status.phase == "Pending" and not claim.spec.volume_name
    node = _schedulable_node(core)
    if node is None:
        pytest.skip("no untainted Ready node: the scheduler cannot pick a node for the consumer")
    pod = {
        "metadata": {"name": "consumer"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "c",
                    "image": BUSYBOX,
                    "command": ["true"],
                    "volumeMounts": [{"name": "v", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "late"}}],
        },
    }
    core.create_namespaced_pod(namespace, pod)
    claim = wait_bound(core, namespace, "late")
    selected = claim.metadata.annotations["volume.kubernetes.io/selected-node"]
    pv = core.read_persistent_volume(claim.spec.volume_name)
    hostname = (core.read_node(selected).metadata.labels or {}).get("kubernetes.io/hostname")
    if hostname:
        term = pv.spec.node_affinity.required.node_selector_terms[0].match_expressions[0]
        assert (term.key, term.values) == ("kubernetes.io/hostname", [hostname])
    assert wait_for(lambda: core.read_namespaced_pod("consumer", namespace).spec.node_name == selected)


@pytest.mark.cluster
def test_snapshot_and_restore(core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str) -> None:
    make_claim(core, namespace, "src")
    source_dir = volume_dir(core, wait_bound(core, namespace, "src"))
    write_tree(source_dir, {"a.txt": "alpha", "nested/b.txt": "beta"})
    os.symlink("a.txt", source_dir / "link")

    make_snapshot(custom, namespace, "snap", {"persistentVolumeClaimName": "src"})
    snapshot = wait_snapshot_ready(custom, namespace, "snap")
    status = snapshot["status"]
    assert status["restoreSize"] == "1Gi" and status["creationTime"] and "error" not in status
    assert snapshot["spec"]["volumeSnapshotClassName"] == "local-snapshots"  # the default, recorded
    content = get_content(custom, status["boundVolumeSnapshotContentName"])
    assert content is not None
    assert content["metadata"]["name"] == f"snapcontent-{snapshot['metadata']['uid']}"
    ref = content["spec"]["volumeSnapshotRef"]
    assert (ref["namespace"], ref["name"], ref["uid"]) == (namespace, "snap", snapshot["metadata"]["uid"])
    assert content["spec"]["deletionPolicy"] == "Delete" and content["spec"]["driver"] == PROVISIONER
    assert content["status"]["readyToUse"] is True and content["status"]["restoreSize"] == 1 << 30

    # Point in time: changes after the snapshot do not reach the restore.
    (source_dir / "a.txt").write_text("changed later")
    snapshot_ref = {"apiGroup": GROUP, "kind": "VolumeSnapshot", "name": "snap"}
    make_claim(core, namespace, "restored", data_source=snapshot_ref, size="2Gi")
    restored_dir = volume_dir(core, wait_bound(core, namespace, "restored"))
    assert read_tree(restored_dir) == {"a.txt": "alpha", "nested/b.txt": "beta"}
    assert os.readlink(restored_dir / "link") == "a.txt"

    # Too small for the snapshot: refused with a clear message, claim stays Pending.
    make_claim(core, namespace, "small", data_source=snapshot_ref, size="512Mi")
    event, *_ = wait_for(
        lambda: [e for e in events_for(core, namespace, "small") if e.reason == "ProvisioningFailed"],
        what="ProvisioningFailed for an undersized restore",
    )
    assert "512Mi" in event.message and "1Gi" in event.message and "restore size" in event.message
    assert core.read_namespaced_persistent_volume_claim("small", namespace).status.phase == "Pending"


@pytest.mark.cluster
def test_restore_waits_for_its_snapshot(
    core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str
) -> None:
    make_claim(core, namespace, "early", data_source={"apiGroup": GROUP, "kind": "VolumeSnapshot", "name": "future"})
    event, *_ = wait_for(
        lambda: [e for e in events_for(core, namespace, "early") if e.reason == "ProvisioningFailed"],
        what="ProvisioningFailed for a missing snapshot",
    )
    assert 'volumesnapshot "future" not found' in event.message
    make_claim(core, namespace, "origin")
    write_tree(volume_dir(core, wait_bound(core, namespace, "origin")), {"v.txt": "1"})
    make_snapshot(custom, namespace, "future", {"persistentVolumeClaimName": "origin"})
    started = time.monotonic()
    assert read_tree(volume_dir(core, wait_bound(core, namespace, "early"))) == {"v.txt": "1"}
    assert time.monotonic() - started < 8, "the snapshot becoming ready should retry the claim at once"


@pytest.mark.cluster
def test_clone_from_claim(core: client.CoreV1Api, namespace: str) -> None:
    make_claim(core, namespace, "origin")
    write_tree(volume_dir(core, wait_bound(core, namespace, "origin")), {"x/y.txt": "why"})
    make_claim(core, namespace, "copy", data_source={"kind": "PersistentVolumeClaim", "name": "origin"})
    assert read_tree(volume_dir(core, wait_bound(core, namespace, "copy"))) == {"x/y.txt": "why"}


@pytest.mark.cluster
def test_snapshot_errors_then_recovers(core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str) -> None:
    make_snapshot(custom, namespace, "early", {"persistentVolumeClaimName": "later"})
    make_snapshot(custom, namespace, "classless", {"persistentVolumeClaimName": "later"}, cls="no-such-class")

    def error_of(name: str) -> str | None:
        status = get_snapshot(custom, namespace, name).get("status") or {}
        return (status.get("error") or {}).get("message") if status.get("readyToUse") is False else None

    assert wait_for(lambda: error_of("early"), what="missing-claim error") == 'persistentvolumeclaim "later" not found'
    assert "no-such-class" in wait_for(lambda: error_of("classless"), what="unknown-class error")
    make_claim(core, namespace, "later")
    snapshot = wait_snapshot_ready(custom, namespace, "early")
    assert "error" not in snapshot["status"]


@pytest.mark.cluster
def test_pre_provisioned_content(core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str) -> None:
    make_claim(core, namespace, "probe")
    state_dir = volume_dir(core, wait_bound(core, namespace, "probe")).parent.parent
    handle = "imported-" + uuid.uuid4().hex[:8]
    write_tree(state_dir / "snapshots" / handle, {"seed.txt": "seed"})
    content_name = f"{namespace}-imported"
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        "volumesnapshotcontents",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "VolumeSnapshotContent",
            "metadata": {"name": content_name},
            "spec": {
                "deletionPolicy": "Delete",
                "driver": PROVISIONER,
                "source": {"snapshotHandle": handle},
                "volumeSnapshotRef": {"name": "imported", "namespace": namespace},
            },
        },
    )
    make_snapshot(custom, namespace, "imported", {"volumeSnapshotContentName": content_name})
    status = wait_snapshot_ready(custom, namespace, "imported")["status"]
    assert status["boundVolumeSnapshotContentName"] == content_name and status["restoreSize"] == "4"
    make_claim(core, namespace, "seeded", data_source={"apiGroup": GROUP, "kind": "VolumeSnapshot", "name": "imported"})
    assert read_tree(volume_dir(core, wait_bound(core, namespace, "seeded"))) == {"seed.txt": "seed"}
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "volumesnapshots", "imported")
    wait_for(lambda: get_content(custom, content_name) is None, what="pre-provisioned content deleted (policy Delete)")
    assert not (state_dir / "snapshots" / handle).exists()


@pytest.mark.cluster
def test_snapshot_schema_rejects_two_sources(custom: client.CustomObjectsApi, namespace: str) -> None:
    for source in ({"persistentVolumeClaimName": "a", "volumeSnapshotContentName": "b"}, {}):
        with pytest.raises(ApiException) as err:
            make_snapshot(custom, namespace, "bad-" + uuid.uuid4().hex[:6], source)
        assert err.value.status == 422
        assert "exactly one of spec.source.persistentVolumeClaimName" in err.value.body


@pytest.mark.cluster
def test_deleting_snapshot_removes_content_and_data(
    core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str
) -> None:
    make_claim(core, namespace, "vol")
    write_tree(volume_dir(core, wait_bound(core, namespace, "vol")), {"f": "1"})
    make_snapshot(custom, namespace, "gone", {"persistentVolumeClaimName": "vol"})
    content_name = wait_snapshot_ready(custom, namespace, "gone")["status"]["boundVolumeSnapshotContentName"]
    content = get_content(custom, content_name)
    data = (
        volume_dir(core, core.read_namespaced_persistent_volume_claim("vol", namespace)).parent.parent
        / "snapshots"
        / content["status"]["snapshotHandle"]
    )
    assert (data / "f").read_text() == "1"
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "volumesnapshots", "gone")
    wait_for(lambda: get_content(custom, content_name) is None, what="content deleted")
    wait_for(lambda: not data.exists(), what="snapshot data removed")


@pytest.mark.cluster
def test_deleting_claim_removes_volume_and_dir(core: client.CoreV1Api, namespace: str) -> None:
    make_claim(core, namespace, "temp")
    claim = wait_bound(core, namespace, "temp")
    path = volume_dir(core, claim)
    write_tree(path, {"junk": "x"})
    core.delete_namespaced_persistent_volume_claim("temp", namespace)

    def volume_gone() -> bool:
        try:
            core.read_persistent_volume(claim.spec.volume_name)
            return False
        except ApiException as exc:
            return exc.status == 404

    wait_for(volume_gone, what="PV deleted")
    assert not path.exists()


@pytest.mark.cluster
def test_namespace_deletion_leaves_no_contents(core: client.CoreV1Api, custom: client.CustomObjectsApi) -> None:
    ns = "t-storage-nsdel-" + uuid.uuid4().hex[:6]
    core.create_namespace({"metadata": {"name": ns}})
    make_claim(core, ns, "v")
    wait_bound(core, ns, "v")
    make_snapshot(custom, ns, "s", {"persistentVolumeClaimName": "v"})
    content_name = wait_snapshot_ready(custom, ns, "s")["status"]["boundVolumeSnapshotContentName"]
    core.delete_namespace(ns)
    wait_for(lambda: get_content(custom, content_name) is None, timeout=30, what="content gone with its namespace")


@pytest.mark.cluster
def test_data_through_pods(core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str) -> None:
    def run_pod(name: str, claim: str, script: str) -> str:
        pod = {
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "c",
                        "image": BUSYBOX,
                        "command": ["sh", "-c", script],
                        "volumeMounts": [{"name": "v", "mountPath": "/data"}],
                    }
                ],
                "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}],
            },
        }
        core.create_namespaced_pod(namespace, pod)
        phase = wait_for(
            lambda: core.read_namespaced_pod(name, namespace).status.phase in ("Succeeded", "Failed")
            and core.read_namespaced_pod(name, namespace).status.phase,
            timeout=30,
            what=f"pod {name} finished",
        )
        logs = core.read_namespaced_pod_log(name, namespace, _preload_content=False).data.decode()
        assert phase == "Succeeded", logs
        return logs

    make_claim(core, namespace, "work")
    run_pod("writer", "work", "echo from-pod-a > /data/out.txt")
    make_snapshot(custom, namespace, "after-a", {"persistentVolumeClaimName": "work"})
    wait_snapshot_ready(custom, namespace, "after-a")
    make_claim(core, namespace, "back", data_source={"apiGroup": GROUP, "kind": "VolumeSnapshot", "name": "after-a"})
    assert run_pod("reader", "back", "cat /data/out.txt").strip() == "from-pod-a"

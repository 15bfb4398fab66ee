"""Storage on the upstream CSI machinery: csi-provisioner, csi-snapshotter, csi-resizer and snapshot-controller
over our CSI driver, on the session's local cluster.

Data goes through pods where the point is the pod's view; elsewhere files are written or read in the
driver's volume directories (``<state dir>/volumes/<volume handle>/data``), which is where a pod's
bind mount points. What the API shows (events, finalizers, status) is the upstream controllers' own.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from k8sso_localcluster import csi
from k8sso_localcluster.build_csi import SNAPSHOT_CLIENT, snapshot_crds
from k8sso_localcluster.images import current
from k8sso_localcluster.pytest_plugin import ClusterHandle
from kubernetes import client
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.cluster

BUSYBOX = current("busybox")
GROUP, VERSION = "snapshot.storage.k8s.io", "v1"
SNAPSHOT_REF = {"apiGroup": GROUP, "kind": "VolumeSnapshot"}


# ------------------------------------------------------------------ helpers
def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition",
             interval: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def events_for(core: client.CoreV1Api, namespace: str, name: str, reason: str | None = None) -> list[Any]:
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    return [e for e in events if reason is None or e.reason == reason]


def make_claim(core: client.CoreV1Api, namespace: str, name: str, storage_class: str | None = "standard",
               size: str = "1Gi", modes: tuple[str, ...] = ("ReadWriteOnce",),
               data_source: dict[str, str] | None = None) -> None:
    spec: dict[str, Any] = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    if data_source:
        spec["dataSource"] = data_source
    core.create_namespaced_persistent_volume_claim(namespace, {"metadata": {"name": name}, "spec": spec})


def claim(core: client.CoreV1Api, namespace: str, name: str) -> Any:
    return core.read_namespaced_persistent_volume_claim(name, namespace)


def wait_bound(core: client.CoreV1Api, namespace: str, name: str, timeout: float = 30.0) -> Any:
    return wait_for(lambda: (c := claim(core, namespace, name)).status.phase == "Bound" and c, timeout,
                    f"claim {namespace}/{name} Bound")


def make_snapshot(custom: client.CustomObjectsApi, namespace: str, name: str, source: dict[str, str],
                  cls: str | None = None) -> dict:
    spec: dict[str, Any] = {"source": source}
    if cls:
        spec["volumeSnapshotClassName"] = cls
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VolumeSnapshot", "metadata": {"name": name}, "spec": spec}
    return custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "volumesnapshots", body)


def get_snapshot(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict:
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "volumesnapshots", name)


def wait_snapshot_ready(custom: client.CustomObjectsApi, namespace: str, name: str, timeout: float = 30.0) -> dict:
    return wait_for(lambda: (s := get_snapshot(custom, namespace, name)).get("status", {}).get("readyToUse") and s,
                    timeout, f"snapshot {namespace}/{name} readyToUse")


def get_content(custom: client.CustomObjectsApi, name: str) -> dict | None:
    try:
        return custom.get_cluster_custom_object(GROUP, VERSION, "volumesnapshotcontents", name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def gone(read: Callable[[], Any]) -> bool:
    try:
        read()
        return False
    except ApiException as exc:
        return exc.status == 404


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def read_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def pod(name: str, claim_name: str, script: str, **spec: Any) -> dict:
    return {"metadata": {"name": name}, "spec": {
        "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "c", "image": BUSYBOX, "command": ["sh", "-c", script],
                        "volumeMounts": [{"name": "v", "mountPath": "/data"}]}],
        "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim_name}}], **spec}}


def pod_log(core: client.CoreV1Api, namespace: str, name: str) -> str:
    return core.read_namespaced_pod_log(name, namespace, _preload_content=False).data.decode()


def run_pod(core: client.CoreV1Api, namespace: str, name: str, claim_name: str, script: str) -> str:
    """Run a busybox pod on the claim to its end; return its log (the test fails if the pod failed)."""
    core.create_namespaced_pod(namespace, pod(name, claim_name, script))
    phase = wait_for(lambda: core.read_namespaced_pod(name, namespace).status.phase in ("Succeeded", "Failed")
                     and core.read_namespaced_pod(name, namespace).status.phase, 60, f"pod {name} finished")
    log = pod_log(core, namespace, name)
    assert phase == "Succeeded", log
    return log


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def data_dir(local_cluster: ClusterHandle, core: client.CoreV1Api) -> Callable[[str, str], Path]:
    """(namespace, claim) -> the driver's directory holding that bound claim's data."""
    if local_cluster.cluster is None:
        pytest.skip("the driver's state dir is on the machine of a cluster this session started")
    state = local_cluster.cluster.storage_dir

    def find(namespace: str, name: str) -> Path:
        pv = core.read_persistent_volume(claim(core, namespace, name).spec.volume_name)
        return state / "volumes" / pv.spec.csi.volume_handle / "data"

    return find


# ------------------------------------------------------------------ what is installed
def test_storage_classes_and_driver(api_client: client.ApiClient) -> None:
    storage = client.StorageV1Api(api_client)
    classes = {c.metadata.name: c for c in storage.list_storage_class().items}
    defaults = [n for n, c in classes.items()
                if (c.metadata.annotations or {}).get("storageclass.kubernetes.io/is-default-class") == "true"]
    assert defaults == ["local-wffc"]
    assert {n: (c.provisioner, c.volume_binding_mode, c.allow_volume_expansion) for n, c in classes.items()
            if n in ("standard", "local-wffc", "local-rwo")} == {
        "standard": (csi.DRIVER, "Immediate", True),
        "local-wffc": (csi.DRIVER, "WaitForFirstConsumer", True),
        "local-rwo": (csi.DRIVER, "Immediate", True),
    }
    assert classes["local-rwo"].parameters == {"nodeAccess": "single"}
    driver = storage.read_csi_driver(csi.DRIVER)
    assert driver.spec.attach_required is False and driver.spec.volume_lifecycle_modes == ["Persistent"]
    snapshot_classes = client.CustomObjectsApi(api_client).list_cluster_custom_object(
        GROUP, VERSION, "volumesnapshotclasses")["items"]
    local = [c for c in snapshot_classes if c["metadata"]["name"] == "local-snapshots"]
    assert local and local[0]["driver"] == csi.DRIVER and local[0]["deletionPolicy"] == "Delete"
    assert local[0]["metadata"]["annotations"]["snapshot.storage.kubernetes.io/is-default-class"] == "true"


def test_snapshot_crds_are_the_pinned_upstream_ones(api_client: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api_client)
    files = {path.name for path in snapshot_crds()}
    assert files == {f"{group}_volume{kind}{s}.yaml" for group, kind in ((GROUP, "snapshot"),
                     (f"group{GROUP}", "groupsnapshot")) for s in ("classes", "contents", "s")}
    for obj in csi.crd_objects():
        crd = ext.read_custom_resource_definition(obj["metadata"]["name"])
        assert crd.metadata.annotations == obj["metadata"]["annotations"]  # api-approved, bundle version
        assert [v.name for v in crd.spec.versions] == [v["name"] for v in obj["spec"]["versions"]]
    assert f"client/v8@{SNAPSHOT_CLIENT[1]}" in str(next(iter(snapshot_crds())))


def test_driver_registered_with_each_kubelet(local_cluster: ClusterHandle, api_client: client.ApiClient) -> None:
    """Plugin registration: each kubelet put the driver into its CSINode and its topology label on the node."""
    nodes = client.CoreV1Api(api_client).list_node().items
    storage = client.StorageV1Api(api_client)
    for node in nodes:
        name = node.metadata.name
        (entry,) = [d for d in storage.read_csi_node(name).spec.drivers if d.name == csi.DRIVER]
        assert entry.node_id == name and entry.topology_keys == [csi.TOPOLOGY_KEY]
        assert node.metadata.labels[csi.TOPOLOGY_KEY] == name
        assert node.metadata.annotations["csi.volume.kubernetes.io/nodeid"] == f'{{"{csi.DRIVER}":"{name}"}}'
    if local_cluster.cluster is not None:
        status = local_cluster.cluster.status()
        expected = {"csi-controller", "csi-provisioner", "csi-snapshotter", "csi-resizer", "snapshot-controller"}
        expected |= {f"csi-node-{n.metadata.name}" for n in nodes}
        assert {name: status.get(name) for name in expected} == {name: "running" for name in expected}


# ------------------------------------------------------------------ provisioning
def test_claim_on_immediate_class_binds_to_csi_volume(core: client.CoreV1Api, namespace: str,
                                                      data_dir: Callable[[str, str], Path]) -> None:
    make_claim(core, namespace, "data", modes=("ReadWriteMany",), size="2Gi")
    bound = wait_bound(core, namespace, "data")
    assert bound.status.capacity == {"storage": "2Gi"} and bound.status.access_modes == ["ReadWriteMany"]
    pv = core.read_persistent_volume(bound.spec.volume_name)
    assert pv.spec.csi.driver == csi.DRIVER and pv.metadata.annotations["pv.kubernetes.io/provisioned-by"] == csi.DRIVER
    assert (pv.spec.claim_ref.name, pv.spec.claim_ref.uid) == ("data", bound.metadata.uid)
    assert pv.spec.persistent_volume_reclaim_policy == "Delete" and pv.metadata.name == f"pvc-{bound.metadata.uid}"
    # The directories are on this machine: the volume is reachable from every node's topology segment.
    terms = pv.spec.node_affinity.required.node_selector_terms
    nodes = {n.metadata.name for n in core.list_node().items}
    assert {e.values[0] for t in terms for e in t.match_expressions if e.key == csi.TOPOLOGY_KEY} == nodes
    assert data_dir(namespace, "data").is_dir()
    assert wait_for(lambda: {e.reason for e in events_for(core, namespace, "data")} >=
                    {"Provisioning", "ProvisioningSucceeded"})


def test_default_class_waits_for_first_consumer(core: client.CoreV1Api, namespace: str) -> None:
    make_claim(core, namespace, "late", storage_class=None)
    assert claim(core, namespace, "late").spec.storage_class_name == "local-wffc"  # DefaultStorageClass admission
    wait_for(lambda: events_for(core, namespace, "late", "WaitForFirstConsumer"), what="WaitForFirstConsumer event")
    time.sleep(1.0)
    assert claim(core, namespace, "late").status.phase == "Pending"
    assert run_pod(core, namespace, "consumer", "late", "echo hi > /data/f && cat /data/f").strip() == "hi"
    bound = wait_bound(core, namespace, "late")
    selected = bound.metadata.annotations["volume.kubernetes.io/selected-node"]
    assert core.read_namespaced_pod("consumer", namespace).spec.node_name == selected


def test_rwx_claim_on_single_node_class_fails_with_event(core: client.CoreV1Api, namespace: str) -> None:
    make_claim(core, namespace, "shared", storage_class="local-rwo", modes=("ReadWriteMany",))
    event, *_ = wait_for(lambda: events_for(core, namespace, "shared", "ProvisioningFailed"),
                         what="ProvisioningFailed event")
    assert event.type == "Warning" and event.source.component.startswith(csi.DRIVER)
    assert "InvalidArgument" in event.message and "MULTI_NODE_MULTI_WRITER is not supported" in event.message
    assert claim(core, namespace, "shared").status.phase == "Pending"
    make_claim(core, namespace, "single", storage_class="local-rwo")
    wait_bound(core, namespace, "single")


def test_expand_claim(core: client.CoreV1Api, namespace: str) -> None:
    make_claim(core, namespace, "grow")
    wait_bound(core, namespace, "grow")
    core.patch_namespaced_persistent_volume_claim(
        "grow", namespace, {"spec": {"resources": {"requests": {"storage": "3Gi"}}}})
    wait_for(lambda: claim(core, namespace, "grow").status.capacity == {"storage": "3Gi"}, what="capacity 3Gi")
    pv = core.read_persistent_volume(claim(core, namespace, "grow").spec.volume_name)
    assert pv.spec.capacity == {"storage": "3Gi"}
    assert wait_for(lambda: events_for(core, namespace, "grow", "VolumeResizeSuccessful"), what="resize event")


def test_deleting_claim_removes_volume_and_dir(core: client.CoreV1Api, namespace: str,
                                               data_dir: Callable[[str, str], Path]) -> None:
    make_claim(core, namespace, "temp")
    volume = wait_bound(core, namespace, "temp").spec.volume_name
    finalizers = core.read_persistent_volume(volume).metadata.finalizers
    assert {"kubernetes.io/pv-protection", "external-provisioner.volume.kubernetes.io/finalizer"} <= set(finalizers)
    path = data_dir(namespace, "temp")
    write_tree(path, {"junk": "x"})
    core.delete_namespaced_persistent_volume_claim("temp", namespace)
    wait_for(lambda: gone(lambda: core.read_persistent_volume(volume)), what="PV deleted")
    assert not path.parent.exists()


def test_claim_in_use_is_kept_until_its_pod_is_gone(core: client.CoreV1Api, namespace: str) -> None:
    """kubernetes.io/pvc-protection: deleting a mounted claim waits for the pod."""
    make_claim(core, namespace, "busy")
    core.create_namespaced_pod(namespace, pod("user", "busy", "sleep 3600"))
    wait_for(lambda: core.read_namespaced_pod("user", namespace).status.phase == "Running", 60, what="pod Running")
    core.delete_namespaced_persistent_volume_claim("busy", namespace)
    time.sleep(2)
    kept = claim(core, namespace, "busy")
    assert kept.metadata.deletion_timestamp and "kubernetes.io/pvc-protection" in kept.metadata.finalizers
    assert kept.status.phase == "Bound"
    core.delete_namespaced_pod("user", namespace)
    wait_for(lambda: gone(lambda: claim(core, namespace, "busy")), 60, what="claim deleted after its pod")


# ------------------------------------------------------------------ snapshots
def test_snapshot_and_restore(core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str,
                              data_dir: Callable[[str, str], Path]) -> None:
    make_claim(core, namespace, "src")
    wait_bound(core, namespace, "src")
    source = data_dir(namespace, "src")
    write_tree(source, {"a.txt": "alpha", "nested/b.txt": "beta"})
    (source / "link").symlink_to("a.txt")

    make_snapshot(custom, namespace, "snap", {"persistentVolumeClaimName": "src"})
    snapshot = wait_snapshot_ready(custom, namespace, "snap")
    status = snapshot["status"]
    assert status["restoreSize"] == "1Gi" and status["creationTime"] and "error" not in status
    assert snapshot["spec"]["volumeSnapshotClassName"] == "local-snapshots"  # the default, recorded
    content = get_content(custom, status["boundVolumeSnapshotContentName"])
    assert content is not None and content["metadata"]["name"] == f"snapcontent-{snapshot['metadata']['uid']}"
    ref = content["spec"]["volumeSnapshotRef"]
    assert (ref["namespace"], ref["name"], ref["uid"]) == (namespace, "snap", snapshot["metadata"]["uid"])
    assert content["spec"]["deletionPolicy"] == "Delete" and content["spec"]["driver"] == csi.DRIVER
    assert content["status"]["readyToUse"] is True and content["status"]["restoreSize"] == 1 << 30

    (source / "a.txt").write_text("changed later")  # point in time: not in the restore
    make_claim(core, namespace, "restored", data_source={**SNAPSHOT_REF, "name": "snap"}, size="2Gi")
    wait_bound(core, namespace, "restored")
    restored = data_dir(namespace, "restored")
    assert read_tree(restored) == {"a.txt": "alpha", "link": "alpha", "nested/b.txt": "beta"}
    assert (restored / "link").readlink() == Path("a.txt")

    make_claim(core, namespace, "small", data_source={**SNAPSHOT_REF, "name": "snap"}, size="512Mi")
    event, *_ = wait_for(lambda: events_for(core, namespace, "small", "ProvisioningFailed"),
                         what="ProvisioningFailed for an undersized restore")
    assert "less than the size" in event.message, event.message
    assert claim(core, namespace, "small").status.phase == "Pending"


def test_restore_waits_for_its_snapshot(core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str,
                                        data_dir: Callable[[str, str], Path]) -> None:
    make_claim(core, namespace, "early", data_source={**SNAPSHOT_REF, "name": "future"})
    event, *_ = wait_for(lambda: events_for(core, namespace, "early", "ProvisioningFailed"),
                         what="ProvisioningFailed for a missing snapshot")
    assert 'volumesnapshots.snapshot.storage.k8s.io "future" not found' in event.message, event.message
    make_claim(core, namespace, "origin")
    wait_bound(core, namespace, "origin")
    write_tree(data_dir(namespace, "origin"), {"v.txt": "1"})
    make_snapshot(custom, namespace, "future", {"persistentVolumeClaimName": "origin"})
    wait_bound(core, namespace, "early", timeout=60)  # the provisioner retries with back-off
    assert read_tree(data_dir(namespace, "early")) == {"v.txt": "1"}


def test_clone_from_claim(core: client.CoreV1Api, namespace: str, data_dir: Callable[[str, str], Path]) -> None:
    make_claim(core, namespace, "origin")
    wait_bound(core, namespace, "origin")
    write_tree(data_dir(namespace, "origin"), {"x/y.txt": "why"})
    make_claim(core, namespace, "copy", data_source={"kind": "PersistentVolumeClaim", "name": "origin"})
    wait_bound(core, namespace, "copy")
    assert read_tree(data_dir(namespace, "copy")) == {"x/y.txt": "why"}


def test_snapshot_errors_then_recovers(core: client.CoreV1Api, custom: client.CustomObjectsApi,
                                       namespace: str) -> None:
    make_snapshot(custom, namespace, "early", {"persistentVolumeClaimName": "later"})
    make_snapshot(custom, namespace, "classless", {"persistentVolumeClaimName": "later"}, cls="no-such-class")

    def error_of(name: str) -> str | None:
        status = get_snapshot(custom, namespace, name).get("status") or {}
        return (status.get("error") or {}).get("message")

    message = wait_for(lambda: error_of("early"), what="missing claim")
    assert "failed to retrieve PVC later" in message and "not found" in message, message
    make_claim(core, namespace, "later")
    assert "no-such-class" in wait_for(lambda: error_of("classless"), what="unknown class error")
    assert "error" not in wait_snapshot_ready(custom, namespace, "early", timeout=90)["status"]


def test_snapshot_of_a_volume_in_use(core: client.CoreV1Api, custom: client.CustomObjectsApi,
                                     namespace: str) -> None:
    """A snapshot of a mounted volume is taken (crash-consistent); restore sees what was written before."""
    make_claim(core, namespace, "live")
    core.create_namespaced_pod(namespace, pod("writer", "live", "echo before > /data/f; sleep 3600"))
    wait_for(lambda: core.read_namespaced_pod("writer", namespace).status.phase == "Running", 60, what="Running")
    time.sleep(1)
    make_snapshot(custom, namespace, "hot", {"persistentVolumeClaimName": "live"})
    wait_snapshot_ready(custom, namespace, "hot")
    make_claim(core, namespace, "cold", data_source={**SNAPSHOT_REF, "name": "hot"})
    assert run_pod(core, namespace, "reader", "cold", "cat /data/f").strip() == "before"


def test_source_claim_deleted_after_its_snapshot_is_ready(core: client.CoreV1Api, custom: client.CustomObjectsApi,
                                                          namespace: str) -> None:
    """A claim deleted after its snapshot is ready goes away; the snapshot (bound, with its finalizer) and a
    restore from it stay."""
    make_claim(core, namespace, "orig")
    wait_bound(core, namespace, "orig")
    make_snapshot(custom, namespace, "keep", {"persistentVolumeClaimName": "orig"})
    wait_snapshot_ready(custom, namespace, "keep")
    wait_for(lambda: "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection" in
             get_snapshot(custom, namespace, "keep")["metadata"].get("finalizers", []), what="bound finalizer")
    core.delete_namespaced_persistent_volume_claim("orig", namespace)
    wait_for(lambda: gone(lambda: claim(core, namespace, "orig")), what="source claim deleted")
    make_claim(core, namespace, "again", data_source={**SNAPSHOT_REF, "name": "keep"})
    wait_bound(core, namespace, "again")


def test_pre_provisioned_content(core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str,
                                 data_dir: Callable[[str, str], Path]) -> None:
    """Static snapshots: a Retain snapshot's handle imported as a new VolumeSnapshotContent."""
    retain = f"retain-{namespace}"[:63]
    custom.create_cluster_custom_object(GROUP, VERSION, "volumesnapshotclasses", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "VolumeSnapshotClass", "metadata": {"name": retain},
        "driver": csi.DRIVER, "deletionPolicy": "Retain"})
    try:
        make_claim(core, namespace, "seed")
        wait_bound(core, namespace, "seed")
        write_tree(data_dir(namespace, "seed"), {"seed.txt": "seed"})
        make_snapshot(custom, namespace, "first", {"persistentVolumeClaimName": "seed"}, cls=retain)
        first = wait_snapshot_ready(custom, namespace, "first")["status"]["boundVolumeSnapshotContentName"]
        handle = get_content(custom, first)["status"]["snapshotHandle"]
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "volumesnapshots", "first")
        wait_for(lambda: gone(lambda: get_snapshot(custom, namespace, "first")), what="snapshot deleted")
        assert get_content(custom, first) is not None  # Retain
        custom.delete_cluster_custom_object(GROUP, VERSION, "volumesnapshotcontents", first)

        content_name = f"{namespace}-imported"
        custom.create_cluster_custom_object(GROUP, VERSION, "volumesnapshotcontents", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "VolumeSnapshotContent", "metadata": {"name": content_name},
            "spec": {"deletionPolicy": "Delete", "driver": csi.DRIVER, "source": {"snapshotHandle": handle},
                     "volumeSnapshotRef": {"name": "imported", "namespace": namespace}}})
        make_snapshot(custom, namespace, "imported", {"volumeSnapshotContentName": content_name})
        status = wait_snapshot_ready(custom, namespace, "imported")["status"]
        assert status["boundVolumeSnapshotContentName"] == content_name and status["restoreSize"] == "1Gi"
        make_claim(core, namespace, "seeded", data_source={**SNAPSHOT_REF, "name": "imported"})
        wait_bound(core, namespace, "seeded")
        assert read_tree(data_dir(namespace, "seeded")) == {"seed.txt": "seed"}
        snapshots_dir = data_dir(namespace, "seeded").parent.parent.parent / "snapshots"
        assert (snapshots_dir / handle).is_dir()
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "volumesnapshots", "imported")
        wait_for(lambda: get_content(custom, content_name) is None, what="content deleted (policy Delete)")
        wait_for(lambda: not (snapshots_dir / handle).exists(), what="snapshot data deleted by the driver")
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "volumesnapshotclasses", retain)


def test_snapshot_schema_rejects_two_sources(custom: client.CustomObjectsApi, namespace: str) -> None:
    for source in ({"persistentVolumeClaimName": "a", "volumeSnapshotContentName": "b"}, {}):
        with pytest.raises(ApiException) as err:
            make_snapshot(custom, namespace, "bad-" + uuid.uuid4().hex[:6], source)
        assert err.value.status == 422
        assert "exactly one of" in err.value.body


def test_deleting_snapshot_removes_content_and_data(core: client.CoreV1Api, custom: client.CustomObjectsApi,
                                                    namespace: str, data_dir: Callable[[str, str], Path]) -> None:
    make_claim(core, namespace, "vol")
    wait_bound(core, namespace, "vol")
    write_tree(data_dir(namespace, "vol"), {"f": "1"})
    make_snapshot(custom, namespace, "gone", {"persistentVolumeClaimName": "vol"})
    content_name = wait_snapshot_ready(custom, namespace, "gone")["status"]["boundVolumeSnapshotContentName"]
    handle = get_content(custom, content_name)["status"]["snapshotHandle"]
    wait_for(lambda: "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection" in
             get_content(custom, content_name)["metadata"].get("finalizers", []), what="content's bound finalizer")
    data = data_dir(namespace, "vol").parent.parent.parent / "snapshots" / handle / "data"
    assert (data / "f").read_text() == "1"
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "volumesnapshots", "gone")
    wait_for(lambda: get_content(custom, content_name) is None, what="content deleted")
    wait_for(lambda: not data.exists(), what="snapshot data removed")


def test_namespace_deletion_leaves_no_contents(core: client.CoreV1Api, custom: client.CustomObjectsApi) -> None:
    ns = "t-storage-nsdel-" + uuid.uuid4().hex[:6]
    core.create_namespace({"metadata": {"name": ns}})
    make_claim(core, ns, "v")
    wait_bound(core, ns, "v")
    make_snapshot(custom, ns, "s", {"persistentVolumeClaimName": "v"})
    content_name = wait_snapshot_ready(custom, ns, "s")["status"]["boundVolumeSnapshotContentName"]
    core.delete_namespace(ns)
    wait_for(lambda: get_content(custom, content_name) is None, timeout=60, what="content gone with its namespace")
    wait_for(lambda: gone(lambda: core.read_namespace(ns)), timeout=60, what="namespace gone")


def test_data_through_pods(core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str) -> None:
    make_claim(core, namespace, "work")
    run_pod(core, namespace, "writer", "work", "echo from-pod-a > /data/out.txt")
    make_snapshot(custom, namespace, "after-a", {"persistentVolumeClaimName": "work"})
    wait_snapshot_ready(custom, namespace, "after-a")
    make_claim(core, namespace, "back", data_source={**SNAPSHOT_REF, "name": "after-a"})
    assert run_pod(core, namespace, "reader", "back", "cat /data/out.txt").strip() == "from-pod-a"


def test_node_plugin_registers_again_after_a_restart(local_cluster: ClusterHandle, core: client.CoreV1Api,
                                                     namespace: str) -> None:
    """A killed node plugin comes back on a fresh socket; the kubelet's plugin watcher registers it again."""
    if local_cluster.cluster is None:
        pytest.skip("needs the processes of a cluster this session started")
    node = "local-cpu"
    log = local_cluster.cluster.logs / f"csi-node-{node}.log"
    registered = log.read_text().count("registered with the kubelet")
    local_cluster.cluster.restart(f"csi-node-{node}")
    wait_for(lambda: log.read_text().count("registered with the kubelet") == registered + 1,
             what="the kubelet's NotifyRegistrationStatus to the new process")
    make_claim(core, namespace, "after", storage_class="local-wffc")
    assert run_pod(core, namespace, "again", "after", "echo ok > /data/f && cat /data/f").strip() == "ok"
    assert core.read_namespaced_pod("again", namespace).spec.node_name == node

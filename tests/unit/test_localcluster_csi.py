"""The local cluster's CSI wiring, without a cluster: objects, paths, command lines."""

from __future__ import annotations

from pathlib import Path

from k8sso_localcluster import csi
from k8sso_localcluster.build_csi import CsiBinaries


def test_storage_objects() -> None:
    objs = {(o["kind"], o["metadata"]["name"]): o for o in csi.storage_objects()}
    assert objs[("CSIDriver", csi.DRIVER)]["spec"]["attachRequired"] is False
    classes = {name: o for (kind, name), o in objs.items() if kind == "StorageClass"}
    assert {n: o["volumeBindingMode"] for n, o in classes.items()} == {
        "local-wffc": "WaitForFirstConsumer", "standard": "Immediate", "local-rwo": "Immediate"}
    defaults = [n for n, o in classes.items() if o["metadata"].get("annotations")]
    assert defaults == ["local-wffc"] and all(o["provisioner"] == csi.DRIVER for o in classes.values())
    assert classes["local-rwo"]["parameters"] == {csi.NODE_ACCESS_PARAMETER: "single"}
    assert objs[("VolumeSnapshotClass", "local-snapshots")]["driver"] == csi.DRIVER


def test_resource_paths() -> None:
    assert csi.resource_path({"apiVersion": "v1", "kind": "ServiceAccount",
                              "metadata": {"name": "a", "namespace": "kube-system"}}) == \
        "/api/v1/namespaces/kube-system/serviceaccounts/a"
    assert csi.resource_path({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
                              "metadata": {"name": "c"}}) == "/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses/c"
    assert csi.resource_path({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
                              "metadata": {"name": "d"}}) == "/apis/storage.k8s.io/v1/csidrivers/d"
    assert csi.resource_path({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                              "metadata": {"name": "r", "namespace": "default"}}) == \
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings/r"


def test_registration_and_crd_predicates() -> None:
    assert csi.driver_registered({"spec": {"drivers": [{"name": csi.DRIVER, "topologyKeys": [csi.TOPOLOGY_KEY]}]}})
    assert not csi.driver_registered({"spec": {"drivers": [{"name": "other"}]}})
    assert not csi.driver_registered({})
    assert csi.crd_established({"status": {"conditions": [{"type": "Established", "status": "True"}]}})
    assert not csi.crd_established({"status": {"conditions": [{"type": "Established", "status": "False"}]}})


def test_command_lines() -> None:
    bins = CsiBinaries(*(Path(f"/b/{n}") for n in ("prov", "snapctl", "snapper", "resizer", "driver", "sanity")))
    assert csi.driver_argv(Path("/d"), Path("/s.sock"), Path("/st"), "n1", Path("/reg")) == [
        "/d", "--endpoint=/s.sock", "--state-dir=/st", "--node-id=n1", "--registration-dir=/reg"]
    argvs = {s.name: csi.sidecar_argv(bins, s, Path("/c.sock"), Path("/kc")) for s in csi.SIDECARS}
    assert argvs["snapshot-controller"][0] == "/b/snapctl" and "--csi-address=/c.sock" not in argvs["snapshot-controller"]
    for name in ("csi-provisioner", "csi-snapshotter", "csi-resizer"):
        assert "--csi-address=/c.sock" in argvs[name] and "--leader-election=false" in argvs[name]
    assert {s.user for s in csi.SIDECARS} >= {"system:serviceaccount:kube-system:snapshot-controller"}

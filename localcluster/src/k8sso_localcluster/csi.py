"""The local cluster's storage: our CSI driver under the upstream CSI sidecars and snapshot controller.

Everything runs as host processes, like the control plane (the nodes' pods have no route to the API
server's host-side sockets, and no images for the sidecars exist; a process needs neither):

- ``k8sso-csi-driver`` once as the controller plugin, on a socket the sidecars share;
- ``k8sso-csi-driver`` once per node as that node's plugin, registered with its kubelet through the
  kubelet's plugin-registration socket directory (what node-driver-registrar does elsewhere);
- ``csi-provisioner``, ``csi-snapshotter``, ``csi-resizer`` on the controller socket and
  ``snapshot-controller``, each with a client certificate for the ServiceAccount that the upstream
  RBAC manifests (read from the pinned modules' ``deploy/kubernetes``) bind their permissions to.

The VolumeSnapshot (and VolumeGroupSnapshot) CRDs come from the pinned client module's ``config/crd``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .build_csi import CsiBinaries, rbac_manifests, snapshot_crds

DRIVER = "csi.k8s-step-operator.io"
TOPOLOGY_KEY = "topology.csi.k8s-step-operator.io/node"
NODE_ACCESS_PARAMETER = "nodeAccess"  # "single": the class refuses ReadOnlyMany / ReadWriteMany
MANAGED_BY = {"app.kubernetes.io/managed-by": "k8s-step-operator-localcluster"}


@dataclass(frozen=True)
class Sidecar:
    """An upstream controller process and the ServiceAccount its upstream RBAC binds."""

    name: str
    namespace: str
    service_account: str

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


SIDECARS = (
    Sidecar("csi-provisioner", "default", "csi-provisioner"),
    Sidecar("csi-snapshotter", "default", "csi-snapshotter"),
    Sidecar("csi-resizer", "default", "csi-resizer"),
    Sidecar("snapshot-controller", "kube-system", "snapshot-controller"),
)


def driver_argv(driver: Path, endpoint: Path, state_dir: Path, node_id: str | None = None,
                registration_dir: Path | None = None) -> list[str]:
    """The driver's command line: the controller plugin, or a node's plugin when ``node_id`` is given."""
    argv = [str(driver), f"--endpoint={endpoint}", f"--state-dir={state_dir}"]
    if node_id:
        argv.append(f"--node-id={node_id}")
    if registration_dir:
        argv.append(f"--registration-dir={registration_dir}")
    return argv


def sidecar_argv(bins: CsiBinaries, sidecar: Sidecar, socket: Path, kubeconfig: Path) -> list[str]:
    """The command line of one upstream controller (leader election off: one instance per cluster)."""
    common = [f"--kubeconfig={kubeconfig}", "--leader-election=false", "--v=2"]
    if sidecar.name == "snapshot-controller":
        return [str(bins.snapshot_controller), *common]
    csi_common = [*common, f"--csi-address={socket}", "--timeout=60s"]
    if sidecar.name == "csi-provisioner":
        return [str(bins.provisioner), *csi_common, "--feature-gates=Topology=true", "--extra-create-metadata",
                "--retry-interval-max=10s"]
    if sidecar.name == "csi-snapshotter":
        return [str(bins.snapshotter), *csi_common, "--extra-create-metadata"]
    return [str(bins.resizer), *csi_common, "--handle-volume-inuse-error=false"]


def _class(name: str, binding: str, default: bool = False, parameters: dict[str, str] | None = None) -> dict:
    metadata: dict = {"name": name, "labels": MANAGED_BY}
    if default:
        metadata["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
    obj = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": metadata, "provisioner": DRIVER,
           "reclaimPolicy": "Delete", "volumeBindingMode": binding, "allowVolumeExpansion": True}
    if parameters:
        obj["parameters"] = parameters
    return obj


def storage_objects() -> list[dict]:
    """The CSIDriver, the StorageClasses and the default VolumeSnapshotClass."""
    return [
        {"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": DRIVER, "labels": MANAGED_BY},
         # No attach step (nothing to attach: a volume is a directory); kubelet may chown it to a pod's fsGroup.
         "spec": {"attachRequired": False, "podInfoOnMount": False, "volumeLifecycleModes": ["Persistent"],
                  "fsGroupPolicy": "File", "requiresRepublish": False}},
        _class("local-wffc", "WaitForFirstConsumer", default=True),
        _class("standard", "Immediate"),
        _class("local-rwo", "Immediate", parameters={NODE_ACCESS_PARAMETER: "single"}),
        {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
         "metadata": {"name": "local-snapshots", "labels": MANAGED_BY,
                      "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}},
         "driver": DRIVER, "deletionPolicy": "Delete"},
    ]


def crd_objects() -> list[dict]:
    """The (group) snapshot CRDs of the pinned release."""
    return [yaml.safe_load(path.read_text()) for path in snapshot_crds()]


def rbac_objects() -> list[dict]:
    """The upstream RBAC of every sidecar (a ServiceAccount without a namespace goes to ``default``)."""
    docs = []
    for path in rbac_manifests():
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            if doc["kind"] in _NAMESPACED:
                doc["metadata"].setdefault("namespace", "default")
            docs.append(doc)
    return docs


_NAMESPACED = {"ServiceAccount": "serviceaccounts", "Role": "roles", "RoleBinding": "rolebindings"}
_CLUSTER = {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings",
            "CustomResourceDefinition": "customresourcedefinitions", "StorageClass": "storageclasses",
            "CSIDriver": "csidrivers", "VolumeSnapshotClass": "volumesnapshotclasses"}


def resource_path(obj: dict) -> str:
    """The URL path of one object of a kind this module installs."""
    version, kind, name = obj["apiVersion"], obj["kind"], obj["metadata"]["name"]
    prefix = "/api/v1" if version == "v1" else f"/apis/{version}"
    if kind in _NAMESPACED:
        return f"{prefix}/namespaces/{obj['metadata']['namespace']}/{_NAMESPACED[kind]}/{name}"
    return f"{prefix}/{_CLUSTER[kind]}/{name}"


def crd_established(crd: dict) -> bool:
    """Whether a CRD's Established condition is True."""
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in (crd.get("status") or {}).get("conditions") or [])


def driver_registered(csinode: dict) -> bool:
    """Whether a CSINode lists our driver with its topology key (the kubelet registered the plugin)."""
    drivers = (csinode.get("spec") or {}).get("drivers") or []
    return any(d.get("name") == DRIVER and TOPOLOGY_KEY in (d.get("topologyKeys") or []) for d in drivers)

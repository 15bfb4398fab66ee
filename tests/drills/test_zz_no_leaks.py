"""Runs last in the session (see ``pytest_collection_modifyitems`` in this folder's conftest):
nothing the tests created survives outside their namespaces, and no namespace keeps what a
finished run should have cleaned up.

Accounting for what a policy keeps on purpose: failed pods (``keep-failed`` is the default)
and pods of ``cleanup_policy: keep`` live only in test namespaces (label ``k8sso-test``).
Function- and module-scoped fixtures have deleted theirs by now, so those must finish
terminating; the session-scoped ones (e.g. ``zenml-it``) are deleted after this test, so a
*finished* pod there is accounted for, a Pending/Running one or any Secret is a leak.
Secrets of the operator never outlive their step, anywhere.
"""

from __future__ import annotations

from typing import Any

import pytest
from k8sso_localcluster import csi
from k8sso_localcluster.controlplane import default_nodes
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .conftest import MANAGED, wait_until

pytestmark = pytest.mark.cluster

SYSTEM_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}
# The local cluster's own: the built-in ones, and the CSI controllers' upstream RBAC (localcluster/csi.py).
_CSI_RBAC = csi.rbac_objects()
BUILTIN_CLUSTER_ROLES = {"admin", "cluster-admin", "edit", "view"} | {
    o["metadata"]["name"] for o in _CSI_RBAC if o["kind"] == "ClusterRole"}
CLUSTER_CRDS = {o["metadata"]["name"] for o in csi.crd_objects()}  # the (group) snapshot CRDs
BUILTIN_CLUSTER_ROLE_BINDINGS = {"cluster-admin"} | {
    o["metadata"]["name"] for o in _CSI_RBAC if o["kind"] == "ClusterRoleBinding"}
STORAGE_CRD_GROUP = "snapshot.storage.k8s.io"


def _terminating_gone(api: client.ApiClient) -> list[str]:
    core = client.CoreV1Api(api)
    return [n.metadata.name for n in core.list_namespace().items if n.status.phase == "Terminating"]


def _test_namespace(ns: Any) -> bool:
    return (ns.metadata.labels or {}).get("k8sso-test") == "true"


def test_no_namespace_is_stuck_terminating(api_client: client.ApiClient) -> None:
    """Deleted test namespaces finish deleting: no finalizer (PVC, snapshot, pod) holds one."""
    wait_until(lambda: not _terminating_gone(api_client), 240, "terminating namespaces to disappear", interval=1.0)


def test_operator_objects_only_where_a_policy_keeps_them(api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    test_namespaces = {n.metadata.name for n in core.list_namespace().items if _test_namespace(n)}
    leaks: list[str] = []
    for secret in core.list_secret_for_all_namespaces(label_selector=MANAGED).items:
        leaks.append(f"Secret {secret.metadata.namespace}/{secret.metadata.name} outlived its step")
    for pod in core.list_pod_for_all_namespaces(label_selector=MANAGED).items:
        if pod.metadata.namespace not in test_namespaces:
            leaks.append(f"Pod {pod.metadata.namespace}/{pod.metadata.name} ({pod.status.phase}) kept outside a "
                         "test namespace")
    for claim in core.list_persistent_volume_claim_for_all_namespaces(label_selector=MANAGED).items:
        if claim.metadata.namespace not in test_namespaces:
            leaks.append(f"PVC {claim.metadata.namespace}/{claim.metadata.name} outside a test namespace")
    assert leaks == []


def test_no_operator_pod_left_pending_or_running(api_client: client.ApiClient) -> None:
    """Every run has finished: an operator pod still Pending or Running is a leak, whatever the policy."""
    core = client.CoreV1Api(api_client)
    alive = [
        f"Pod {pod.metadata.namespace}/{pod.metadata.name} ({pod.status.phase})"
        for pod in core.list_pod_for_all_namespaces(label_selector=MANAGED).items
        if pod.status.phase not in ("Succeeded", "Failed") and pod.metadata.deletion_timestamp is None
    ]
    assert alive == []


def test_no_unexpected_namespaces(local_cluster: Any, api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    names = {n.metadata.name: n for n in core.list_namespace().items}
    if local_cluster.cluster is None:  # a shared external cluster: judge only what our tests label
        extra = {name for name, ns in names.items() if _test_namespace(ns) and name.startswith(("d-", "dd-", "t-"))}
    else:
        extra = {name for name, ns in names.items() if name not in SYSTEM_NAMESPACES and not _test_namespace(ns)}
        extra |= {name for name in names if name.startswith(("d-", "dd-", "t-"))}  # function/module-scoped ones
    assert sorted(extra) == []


def test_no_cluster_scoped_leftovers(local_cluster: Any, api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    rbac_api = client.RbacAuthorizationV1Api(api_client)
    ext = client.ApiextensionsV1Api(api_client)
    leaks: list[str] = []

    claims = {(c.metadata.namespace, c.metadata.name) for c in core.list_persistent_volume_claim_for_all_namespaces().items}
    for pv in core.list_persistent_volume().items:
        ref = pv.spec.claim_ref
        if ref is None or (ref.namespace, ref.name) not in claims:
            leaks.append(f"PersistentVolume {pv.metadata.name} ({pv.status.phase}) has no claim")

    snapshots = {
        (s["metadata"]["namespace"], s["metadata"]["name"])
        for s in custom.list_cluster_custom_object(STORAGE_CRD_GROUP, "v1", "volumesnapshots")["items"]
    }
    for content in custom.list_cluster_custom_object(STORAGE_CRD_GROUP, "v1", "volumesnapshotcontents")["items"]:
        ref = content["spec"].get("volumeSnapshotRef") or {}
        if (ref.get("namespace"), ref.get("name")) not in snapshots:
            leaks.append(f"VolumeSnapshotContent {content['metadata']['name']} has no VolumeSnapshot")

    def crds_left() -> list[str]:
        return [c.metadata.name for c in ext.list_custom_resource_definition().items
                if c.metadata.name not in CLUSTER_CRDS]

    try:
        wait_until(lambda: not crds_left(), 60, "test CRDs to finish deleting", interval=0.5)
    except AssertionError:
        leaks += [f"CustomResourceDefinition {name}" for name in crds_left()]

    for role in rbac_api.list_cluster_role().items:
        name = role.metadata.name
        if name.startswith("k8s-step-operator") or (
            local_cluster.cluster is not None and not name.startswith("system:") and name not in BUILTIN_CLUSTER_ROLES
        ):
            leaks.append(f"ClusterRole {name}")
    for binding in rbac_api.list_cluster_role_binding().items:
        name = binding.metadata.name
        if name.startswith("k8s-step-operator") or (
            local_cluster.cluster is not None and not name.startswith("system:")
            and name not in BUILTIN_CLUSTER_ROLE_BINDINGS
        ):
            leaks.append(f"ClusterRoleBinding {name}")
    assert leaks == []


def test_session_cluster_is_whole(local_cluster: Any, api_client: client.ApiClient) -> None:
    """No drill broke the cluster the session shares: every component up, every node Ready."""
    if local_cluster.cluster is None:
        pytest.skip("external cluster: not ours to judge")
    assert set(local_cluster.cluster.status().values()) == {"running"}
    nodes = {n.metadata.name: n for n in client.CoreV1Api(api_client).list_node().items}
    assert sorted(nodes) == sorted(spec.name for spec in default_nodes())
    for node in nodes.values():
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True", node.metadata.name
    try:
        assert local_cluster.cluster.get("/readyz") == b"ok"
    except ApiException as exc:  # pragma: no cover - reported by the assertion
        raise AssertionError(exc) from exc

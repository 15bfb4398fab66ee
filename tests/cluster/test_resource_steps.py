"""Resource, volume and snapshot steps against the local control plane.

Most tests call the steps' implementation (``run_resource``/``run_volume``/
``run_snapshot``) directly with an explicit cluster; the last ones run real
ZenML pipelines in a subprocess with their own ZenML state.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from k8s_step_operator.kube import rest
from k8s_step_operator.steps.cluster import Cluster
from k8s_step_operator.steps.errors import ConditionFailed, Forbidden, ObjectDeleted, ResourceStepError, WaitTimeout
from k8s_step_operator.steps.object_watch import WaitTarget, wait_until_deleted
from k8s_step_operator.steps.resource_runtime import RunInfo, run_resource
from k8s_step_operator.steps.resource_spec import (
    MANAGED_BY_LABEL,
    RUN_ID_LABEL,
    ResourceSpecError,
    StepOptions,
    build_resource_spec,
)
from k8s_step_operator.steps.volume_runtime import run_snapshot, run_volume
from k8s_step_operator.steps.volume_spec import VOLUME_MODE_RWM, VOLUME_OPTIONS, build_snapshot_spec, build_volume_spec

from ..zenml_support import BIN, src_on_pythonpath, zenml_env
from .custom_task_controller import install_crd as shared_install_crd

pytestmark = pytest.mark.cluster


# --------------------------------------------------------------------------- #
# Fixtures and helpers
# --------------------------------------------------------------------------- #


# ``cluster`` and ``run``: tests/cluster/conftest.py


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": dict(data)}


def raw(cluster: Cluster, method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
    return rest.request(cluster.api, method, path, body=body, content_type=content_type, timeout=30)


def later(delay: float, action: Callable[[], Any]) -> threading.Thread:
    """Run ``action`` after ``delay`` seconds in a thread (flips status while a step waits).

    A 404 (the step has not created the object yet) is retried for a while.
    """

    def body() -> None:
        time.sleep(delay)
        deadline = time.monotonic() + 20
        while True:
            try:
                action()
                return
            except ApiException as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


def merge_patch(cluster: Cluster, path: str, patch: dict[str, Any]) -> Any:
    return raw(cluster, "PATCH", path, patch, "application/merge-patch+json")


def wait_gone(cluster: Cluster, list_path: str, name: str, timeout: float = 60) -> None:
    wait_until_deleted(cluster.api, WaitTarget(list_path, name, name), timeout)


def install_crd(cluster: Cluster, group: str, kind: str, plural: str, scope: str) -> None:
    shared_install_crd(cluster.api, group, kind, plural, scope)


@pytest.fixture
def widget_crd(cluster: Cluster) -> Iterator[str]:
    """A namespaced custom resource kind (Widget) in a per-test group."""
    group = f"w{uuid.uuid4().hex[:8]}.k8sso.example.com"
    install_crd(cluster, group, "Widget", "widgets", "Namespaced")
    yield group
    raw(cluster, "DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{group}")


@pytest.fixture
def gadget_crd(cluster: Cluster) -> Iterator[str]:
    """A cluster-scoped custom resource kind (Gadget) in a per-test group."""
    group = f"g{uuid.uuid4().hex[:8]}.k8sso.example.com"
    install_crd(cluster, group, "Gadget", "gadgets", "Cluster")
    yield group
    raw(cluster, "DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.{group}")


# --------------------------------------------------------------------------- #
# Actions
# --------------------------------------------------------------------------- #


def test_create_labels_records_and_outputs(cluster: Cluster, run: RunInfo) -> None:
    spec = build_resource_spec(
        configmap("cm", a="1"),
        attribute_outputs={"a": "{.data.a}", "uid": "{.metadata.uid}", "missing": "{.data.nope}"},
        options=StepOptions(cleanup="on-run-end"),
    )
    result = run_resource(spec, cluster=cluster, run=run)
    assert result.name == "cm"
    labels = result.manifest["metadata"]["labels"]
    assert labels[MANAGED_BY_LABEL] == "k8s-step-operator" and labels[RUN_ID_LABEL] == run.run_id
    assert "managedFields" not in result.manifest["metadata"]
    assert result.outputs == {"a": "1", "uid": result.manifest["metadata"]["uid"], "missing": ""}
    [entry] = run.recorded  # type: ignore[attr-defined]
    assert entry["path"] == f"/api/v1/namespaces/{cluster.namespace}/configmaps/cm"
    assert entry["cleanup"] == "on-run-end" and entry["uid"] == result.manifest["metadata"]["uid"]
    assert result.values(spec.output_names)[0] == "cm"


def test_create_with_generate_name_and_existing_name(cluster: Cluster, run: RunInfo) -> None:
    spec = build_resource_spec({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}})
    result = run_resource(spec, cluster=cluster, run=run)
    assert result.name.startswith("gen-") and len(result.name) > 4
    again = build_resource_spec(configmap(result.name))
    with pytest.raises(ResourceStepError, match="already exists; use action='apply'"):
        run_resource(again, cluster=cluster, run=run)


def test_get_existing_and_missing(cluster: Cluster, run: RunInfo) -> None:
    run_resource(build_resource_spec(configmap("there", k="v")), cluster=cluster, run=run)
    got = run_resource(
        build_resource_spec(action="get", api_version="v1", kind="ConfigMap", resource_name="there",
                            attribute_outputs={"k": ".data.k"}),
        cluster=cluster,
        run=run,
    )
    assert got.outputs["k"] == "v"
    with pytest.raises(ResourceStepError, match=f"ConfigMap {cluster.namespace}/absent not found"):
        run_resource(build_resource_spec(action="get", api_version="v1", kind="ConfigMap", resource_name="absent"),
                     cluster=cluster, run=run)


def test_apply_is_server_side_with_our_field_manager(cluster: Cluster, run: RunInfo) -> None:
    first = run_resource(build_resource_spec(configmap("applied", a="1"), action="apply"), cluster=cluster, run=run)
    second = run_resource(build_resource_spec(configmap("applied", a="2", b="3"), action="apply"), cluster=cluster, run=run)
    assert first.manifest["metadata"]["uid"] == second.manifest["metadata"]["uid"]
    assert second.manifest["data"] == {"a": "2", "b": "3"}
    current = raw(cluster, "GET", f"/api/v1/namespaces/{cluster.namespace}/configmaps/applied")
    managers = {(m["manager"], m["operation"]) for m in current["metadata"]["managedFields"]}
    assert ("k8s-step-operator", "Apply") in managers


def test_apply_conflict_needs_force(cluster: Cluster, run: RunInfo) -> None:
    raw(cluster, "POST", f"/api/v1/namespaces/{cluster.namespace}/configmaps", configmap("owned", a="theirs"))
    with pytest.raises(ResourceStepError, match="conflicts with other field managers; set force=True"):
        run_resource(build_resource_spec(configmap("owned", a="ours"), action="apply"), cluster=cluster, run=run)
    forced = run_resource(build_resource_spec(configmap("owned", a="ours"), action="apply", force=True),
                          cluster=cluster, run=run)
    assert forced.manifest["data"]["a"] == "ours"


def test_replace_puts_with_the_current_resource_version(cluster: Cluster, run: RunInfo) -> None:
    raw(cluster, "POST", f"/api/v1/namespaces/{cluster.namespace}/configmaps", configmap("rep", a="1", b="2"))
    result = run_resource(build_resource_spec(configmap("rep", c="3"), action="replace"), cluster=cluster, run=run)
    assert result.manifest["data"] == {"c": "3"}
    with pytest.raises(ResourceStepError, match="not found; replace needs an existing object"):
        run_resource(build_resource_spec(configmap("nope"), action="replace"), cluster=cluster, run=run)


def test_patch_strategic_merges_lists_by_key(cluster: Cluster, run: RunInfo) -> None:
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}, "secrets": [{"name": "a"}]}
    raw(cluster, "POST", f"/api/v1/namespaces/{cluster.namespace}/serviceaccounts", sa)
    patch = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}, "secrets": [{"name": "b"}]}
    strategic = run_resource(build_resource_spec(patch, action="patch"), cluster=cluster, run=run)
    assert sorted(s["name"] for s in strategic.manifest["secrets"]) == ["a", "b"]
    merged = run_resource(build_resource_spec(patch, action="patch", merge_strategy="merge"), cluster=cluster, run=run)
    assert [s["name"] for s in merged.manifest["secrets"]] == ["b"]
    with pytest.raises(ResourceStepError, match="not found; patch needs an existing object"):
        run_resource(build_resource_spec(configmap("nope", a="1"), action="patch"), cluster=cluster, run=run)


def test_patch_json_on_builtin(cluster: Cluster, run: RunInfo) -> None:
    raw(cluster, "POST", f"/api/v1/namespaces/{cluster.namespace}/configmaps", configmap("j", a="1"))
    spec = build_resource_spec(
        [{"op": "test", "path": "/data/a", "value": "1"}, {"op": "add", "path": "/data/b", "value": "2"}],
        action="patch", merge_strategy="json", api_version="v1", kind="ConfigMap", resource_name="j",
    )
    assert run_resource(spec, cluster=cluster, run=run).manifest["data"] == {"a": "1", "b": "2"}


def test_custom_resource_merge_json_and_no_strategic(cluster: Cluster, run: RunInfo, widget_crd: str) -> None:
    api_version = f"{widget_crd}/v1"
    widget = {"apiVersion": api_version, "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 1, "tags": ["a"]}}
    created = run_resource(build_resource_spec(widget, attribute_outputs={"size": "{.spec.size}"}), cluster=cluster, run=run)
    assert created.outputs["size"] == 1
    merge = {"apiVersion": api_version, "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 2}}
    merged = run_resource(build_resource_spec(merge, action="patch", merge_strategy="merge"), cluster=cluster, run=run)
    assert merged.manifest["spec"] == {"size": 2, "tags": ["a"]}
    ops = [{"op": "add", "path": "/spec/tags/-", "value": "b"}]
    patched = run_resource(
        build_resource_spec(ops, action="patch", merge_strategy="json", api_version=api_version, kind="Widget",
                            resource_name="w1"),
        cluster=cluster, run=run,
    )
    assert patched.manifest["spec"]["tags"] == ["a", "b"]
    with pytest.raises(ResourceStepError, match="merge_strategy: 'strategic' is not supported for the custom resource Widget"):
        run_resource(build_resource_spec(merge, action="patch"), cluster=cluster, run=run)
    applied = run_resource(build_resource_spec({**widget, "spec": {"size": 5}}, action="apply", force=True),
                           cluster=cluster, run=run)
    assert applied.manifest["spec"]["size"] == 5


def test_cluster_scoped_custom_resource(cluster: Cluster, run: RunInfo, gadget_crd: str) -> None:
    api_version = f"{gadget_crd}/v1"
    gadget = {"apiVersion": api_version, "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {"on": False}}
    created = run_resource(build_resource_spec(gadget, options=StepOptions(namespace="ignored-for-cluster-scope")), cluster=cluster, run=run)
    assert "namespace" not in created.manifest["metadata"]
    merged = run_resource(
        build_resource_spec({**gadget, "spec": {"on": True}}, action="patch", merge_strategy="merge"), cluster=cluster, run=run
    )
    assert merged.manifest["spec"]["on"] is True
    ops = [{"op": "replace", "path": "/spec/on", "value": False}]
    patched = run_resource(
        build_resource_spec(ops, action="patch", merge_strategy="json", api_version=api_version, kind="Gadget",
                            resource_name="g1"),
        cluster=cluster, run=run,
    )
    assert patched.manifest["spec"]["on"] is False
    # Conditions work on cluster-scoped objects too (status subresource flipped meanwhile).
    later(1.0, lambda: merge_patch(cluster, f"/apis/{api_version}/gadgets/g1/status", {"status": {"ready": True}}))
    waited = run_resource(
        build_resource_spec(action="get", api_version=api_version, kind="Gadget", resource_name="g1",
                            options=StepOptions(success_condition="status.ready==true", timeout=30)),
        cluster=cluster, run=run,
    )
    assert waited.manifest["status"]["ready"] is True
    run_resource(build_resource_spec(action="delete", api_version=api_version, kind="Gadget", resource_name="g1",
                                     wait_for_deletion=True, options=StepOptions(timeout=30)), cluster=cluster, run=run)


def test_cluster_scoped_builtin_kind(cluster: Cluster, run: RunInfo) -> None:
    name = f"k8sso-{uuid.uuid4().hex[:8]}"
    pc = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": 1000}
    try:
        created = run_resource(build_resource_spec(pc, attribute_outputs={"value": "{.value}"}), cluster=cluster, run=run)
        assert created.outputs["value"] == 1000
        [entry] = run.recorded  # type: ignore[attr-defined]
        assert entry["namespace"] is None and entry["path"] == f"/apis/scheduling.k8s.io/v1/priorityclasses/{name}"
        patched = run_resource(
            build_resource_spec({**pc, "description": "from a step"}, action="patch", merge_strategy="merge"),
            cluster=cluster, run=run,
        )
        assert patched.manifest["description"] == "from a step"
    finally:
        deleted = run_resource(
            build_resource_spec(action="delete", api_version="scheduling.k8s.io/v1", kind="PriorityClass",
                                resource_name=name),
            cluster=cluster, run=run,
        )
    assert deleted.name == name and deleted.manifest is None


def test_unknown_kind_and_api_version_are_named_before_anything_is_sent(cluster: Cluster, run: RunInfo) -> None:
    """Discovery (kubernetes.dynamic) on a real API server: a misspelt kind, a group nobody serves."""
    misspelt = {"apiVersion": "v1", "kind": "Configmap", "metadata": {"name": "x"}}
    with pytest.raises(ResourceSpecError, match=r"^k8s_resource.kind: the cluster serves no kind 'Configmap' in "
                                                r"apiVersion 'v1' \(did you mean 'ConfigMap'\?.*kinds there: .*Pod"):
        run_resource(build_resource_spec(misspelt), cluster=cluster, run=run)
    unserved = {"apiVersion": "nothing.k8sso.example.com/v1", "kind": "Thing", "metadata": {"name": "x"}}
    with pytest.raises(ResourceSpecError, match="^k8s_resource.apiVersion: the cluster does not serve apiVersion "
                                                "'nothing.k8sso.example.com/v1'"):
        run_resource(build_resource_spec(unserved), cluster=cluster, run=run)
    assert run.recorded == []  # type: ignore[attr-defined]


def test_delete_ignores_not_found_and_can_wait(cluster: Cluster, run: RunInfo) -> None:
    raw(cluster, "POST", f"/api/v1/namespaces/{cluster.namespace}/configmaps", configmap("doomed"))
    spec = build_resource_spec(action="delete", api_version="v1", kind="ConfigMap", resource_name="doomed",
                               wait_for_deletion=True, options=StepOptions(timeout=30))
    assert run_resource(spec, cluster=cluster, run=run).name == "doomed"
    with pytest.raises(ApiException) as info:
        raw(cluster, "GET", f"/api/v1/namespaces/{cluster.namespace}/configmaps/doomed")
    assert info.value.status == 404
    assert run_resource(spec, cluster=cluster, run=run).name == "doomed"  # already gone: fine
    # The name may come from the step input instead of the spec.
    raw(cluster, "POST", f"/api/v1/namespaces/{cluster.namespace}/configmaps", configmap("by-input"))
    by_input = build_resource_spec(action="delete", api_version="v1", kind="ConfigMap", name_from_input=True)
    assert run_resource(by_input, cluster=cluster, run=run, resource_name="by-input").name == "by-input"


def test_owner_reference(cluster: Cluster, run: RunInfo) -> None:
    parent = run_resource(build_resource_spec(configmap("parent")), cluster=cluster, run=run)
    child = run_resource(
        build_resource_spec(configmap("child"), set_owner_reference={"apiVersion": "v1", "kind": "ConfigMap", "name": "parent"}),
        cluster=cluster, run=run,
    )
    [ref] = child.manifest["metadata"]["ownerReferences"]
    assert ref["uid"] == parent.manifest["metadata"]["uid"] and ref["kind"] == "ConfigMap"


def test_forbidden_names_the_missing_permission(cluster: Cluster, run: RunInfo, local_cluster: Any) -> None:
    ns = cluster.namespace
    raw(cluster, "POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "weak"}})
    token = raw(cluster, "POST", f"/api/v1/namespaces/{ns}/serviceaccounts/weak/token",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})["status"]["token"]
    cfg = client.Configuration()
    cfg.host = cluster.api.configuration.host
    cfg.ssl_ca_cert = cluster.api.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    weak = Cluster(client.ApiClient(cfg), ns, "weak service account")
    with pytest.raises(Forbidden) as info:
        run_resource(build_resource_spec(configmap("x")), cluster=weak, run=run)
    assert str(info.value).startswith(
        f"forbidden: needs create on configmaps in namespace {ns} for system:serviceaccount:{ns}:weak"
    )


# --------------------------------------------------------------------------- #
# Conditions, on watch events
# --------------------------------------------------------------------------- #


def test_success_argo_grammar_on_watch_events(cluster: Cluster, run: RunInfo) -> None:
    path = f"/api/v1/namespaces/{cluster.namespace}/configmaps/flip"
    flipped: list[float] = []

    def flip() -> None:
        flipped.append(time.monotonic())  # before the PATCH: its watch event may end the wait before it returns
        merge_patch(cluster, path, {"data": {"ready": "yes", "count": "3"}})

    later(1.5, flip)
    result = run_resource(
        build_resource_spec(configmap("flip", ready="no"), options=StepOptions(success_condition="data.ready==yes,data.count>2", timeout=30)),
        cluster=cluster, run=run,
    )
    returned = time.monotonic()
    assert result.manifest["data"]["ready"] == "yes"
    assert flipped and returned - flipped[0] < 2.0  # the watch event ended the wait, not a poll interval


def test_success_cel_on_status_subresource(cluster: Cluster, run: RunInfo, widget_crd: str) -> None:
    api_version = f"{widget_crd}/v1"
    widget = {"apiVersion": api_version, "kind": "Widget", "metadata": {"name": "w"}, "spec": {}}
    status_path = f"/apis/{api_version}/namespaces/{cluster.namespace}/widgets/w/status"

    def become_ready() -> None:
        merge_patch(cluster, status_path, {"status": {"conditions": [{"type": "Progressing", "status": "True"}]}})
        time.sleep(0.5)
        merge_patch(cluster, status_path, {"status": {"conditions": [
            {"type": "Progressing", "status": "False"}, {"type": "Ready", "status": "True"}]}})

    later(1.0, become_ready)
    result = run_resource(
        build_resource_spec(
            widget,
            options=StepOptions(
                success_condition="object.status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')",
                failure_condition="cel: object.status.conditions.exists(c, c.type == 'Failed')",
                timeout=30,
            ),
            attribute_outputs={"ready": "{.status.conditions[?(@.type=='Ready')].status}"},
        ),
        cluster=cluster, run=run,
    )
    assert result.outputs["ready"] == "True"


def test_failure_condition_requirements_are_ored(cluster: Cluster, run: RunInfo) -> None:
    path = f"/api/v1/namespaces/{cluster.namespace}/configmaps/job"
    later(1.0, lambda: merge_patch(cluster, path, {"data": {"phase": "Error"}}))
    with pytest.raises(ConditionFailed) as info:
        run_resource(
            build_resource_spec(configmap("job", phase="Running"), options=StepOptions(
                success_condition="data.phase==Done", failure_condition="data.phase==Failed,data.phase==Error", timeout=30
            )),
            cluster=cluster, run=run,
        )
    assert "failure_condition requirement 'data.phase==Error' matched" in str(info.value)


def test_only_a_failure_condition_succeeds_on_first_non_match(cluster: Cluster, run: RunInfo) -> None:
    result = run_resource(build_resource_spec(configmap("ok", phase="Running"), options=StepOptions(failure_condition="data.phase==Failed")),
                          cluster=cluster, run=run)
    assert result.name == "ok"


def test_timeout_shows_the_last_seen_status(cluster: Cluster, run: RunInfo, widget_crd: str) -> None:
    api_version = f"{widget_crd}/v1"
    widget = {"apiVersion": api_version, "kind": "Widget", "metadata": {"name": "slow"}, "spec": {}}
    status_path = f"/apis/{api_version}/namespaces/{cluster.namespace}/widgets/slow/status"
    later(0.5, lambda: merge_patch(cluster, status_path, {"status": {"phase": "Provisioning", "progress": 40}}))
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as info:
        run_resource(build_resource_spec(widget, options=StepOptions(success_condition="status.phase==Ready", timeout=3)), cluster=cluster, run=run)
    assert 2.9 < time.monotonic() - started < 10
    message = str(info.value)
    assert message.startswith(f"timed out after 3s waiting for Widget {cluster.namespace}/slow")
    assert 'last-seen status: {"phase": "Provisioning", "progress": 40}' in message


def test_object_deleted_while_waiting(cluster: Cluster, run: RunInfo) -> None:
    path = f"/api/v1/namespaces/{cluster.namespace}/configmaps/gone"
    later(1.0, lambda: raw(cluster, "DELETE", path))
    with pytest.raises(ObjectDeleted, match=f"ConfigMap {cluster.namespace}/gone was deleted while waiting"):
        run_resource(build_resource_spec(configmap("gone"), options=StepOptions(success_condition="data.never==true", timeout=30)),
                     cluster=cluster, run=run)


def test_broken_condition_is_rejected_before_anything_is_created(cluster: Cluster) -> None:
    with pytest.raises(ResourceSpecError, match="success_condition: cannot parse"):
        build_resource_spec(configmap("never-created"), options=StepOptions(success_condition="status.phase == = x"))
    with pytest.raises(ApiException):
        raw(cluster, "GET", f"/api/v1/namespaces/{cluster.namespace}/configmaps/never-created")


# --------------------------------------------------------------------------- #
# Volumes and snapshots
# --------------------------------------------------------------------------- #


def test_volume_binds_on_standard_and_returns_size(cluster: Cluster, run: RunInfo) -> None:
    spec = build_volume_spec("My Data", "1.5Gi", storage_class="standard", annotations={"team": "ml"})
    result = run_volume(spec, cluster=cluster, run=run)
    assert result.name == "itest-my-data"
    assert result.manifest["status"]["phase"] == "Bound"
    assert result.outputs["size"] == result.manifest["status"]["capacity"]["storage"]
    assert result.manifest["metadata"]["annotations"]["team"] == "ml"
    assert result.manifest["metadata"]["labels"][RUN_ID_LABEL] == run.run_id
    [entry] = run.recorded  # type: ignore[attr-defined]
    assert entry["kind"] == "PersistentVolumeClaim" and entry["cleanup"] == "on-run-end"


def test_volume_on_wait_for_first_consumer_does_not_hang(cluster: Cluster, run: RunInfo) -> None:
    started = time.monotonic()
    result = run_volume(build_volume_spec("late", "1Gi", storage_class="local-wffc", options=VOLUME_OPTIONS.replace(timeout=60)), cluster=cluster, run=run)
    assert time.monotonic() - started < 10
    assert result.manifest["status"]["phase"] == "Pending"
    assert result.outputs["size"] == "1Gi"


def test_volume_default_class(cluster: Cluster, run: RunInfo) -> None:
    result = run_volume(build_volume_spec("dflt", "1Gi", generate_unique_name=False), cluster=cluster, run=run)
    assert result.name == "dflt" and result.manifest["spec"]["storageClassName"] == "local-wffc"


def test_rwx_on_single_node_class_fails_fast_with_a_modes_error(cluster: Cluster, run: RunInfo) -> None:
    """The class's driver refuses multi-node modes; its ProvisioningFailed event ends the step at once."""
    spec = build_volume_spec("shared", "1Gi", storage_class="local-rwo", modes=VOLUME_MODE_RWM, options=VOLUME_OPTIONS.replace(timeout=120))
    started = time.monotonic()
    with pytest.raises(ConditionFailed) as info:
        run_volume(spec, cluster=cluster, run=run)
    assert time.monotonic() - started < 30
    message = str(info.value)
    assert message.startswith("modes: storage class 'local-rwo' cannot provide ReadWriteMany; its provisioner "
                              f"refused the claim: PersistentVolumeClaim {cluster.namespace}/itest-shared: Warning "
                              "event ProvisioningFailed:")
    assert "access mode MULTI_NODE_MULTI_WRITER is not supported" in message


def test_rwx_on_a_documented_single_node_provisioner_is_refused_up_front(cluster: Cluster, run: RunInfo) -> None:
    """A class of a block-storage provisioner (here EBS's name; nothing serves it) cannot give ReadWriteMany:
    refused before the claim is created."""
    name = f"ebs-{cluster.namespace}"[:63]
    raw(cluster, "POST", "/apis/storage.k8s.io/v1/storageclasses", {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
        "provisioner": "ebs.csi.aws.com"})
    try:
        with pytest.raises(ResourceSpecError) as info:
            run_volume(build_volume_spec("shared", "1Gi", storage_class=name, modes=VOLUME_MODE_RWM),
                       cluster=cluster, run=run)
        assert str(info.value) == (
            f"modes: storage class {name!r} does not offer ReadWriteMany: its provisioner ebs.csi.aws.com attaches "
            "a volume to one node at a time; allowed: ReadWriteOnce, ReadWriteOncePod")
        assert raw(cluster, "GET", f"/api/v1/namespaces/{cluster.namespace}/persistentvolumeclaims")["items"] == []
    finally:
        raw(cluster, "DELETE", f"/apis/storage.k8s.io/v1/storageclasses/{name}")


def test_rwx_on_default_class_names_it(cluster: Cluster, run: RunInfo) -> None:
    """Without a class named, the error names the default class the claim got (it binds on first consumer,
    so no provisioning is tried yet and nothing fails)."""
    spec = build_volume_spec("shared", "1Gi", modes=VOLUME_MODE_RWM, generate_unique_name=False)
    result = run_volume(spec, cluster=cluster, run=run)
    assert result.manifest["spec"]["storageClassName"] == "local-wffc"
    assert result.manifest["status"]["phase"] == "Pending"


def test_unknown_storage_class_is_refused(cluster: Cluster, run: RunInfo) -> None:
    with pytest.raises(ResourceSpecError, match="storage_class: the cluster has no StorageClass 'fast'; allowed: local-rwo"):
        run_volume(build_volume_spec("v", "1Gi", storage_class="fast"), cluster=cluster, run=run)


def test_snapshot_ready_restore_size_and_restore(cluster: Cluster, run: RunInfo) -> None:
    volume = run_volume(build_volume_spec("src", "1Gi", storage_class="standard"), cluster=cluster, run=run)
    snap = run_snapshot(build_snapshot_spec("snap", late_inputs=True), cluster=cluster, run=run, volume=volume.name)
    assert snap.name == "itest-snap"
    assert snap.manifest["status"]["readyToUse"] is True
    assert snap.outputs["size"] == snap.manifest["status"]["restoreSize"] and snap.outputs["size"]
    assert snap.manifest["spec"]["source"] == {"persistentVolumeClaimName": volume.name}
    restored = run_volume(build_volume_spec("restored", storage_class="standard", late_inputs=True),
                          cluster=cluster, run=run, data_source=snap.name)
    assert restored.manifest["status"]["phase"] == "Bound"
    assert restored.manifest["spec"]["dataSource"] == {
        "apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snap.name}
    from k8s_step_operator.validation import parse_quantity

    assert parse_quantity(restored.outputs["size"]) >= parse_quantity(snap.outputs["size"])
    with pytest.raises(ResourceSpecError, match="size: '1Mi' is smaller than VolumeSnapshot"):
        run_volume(build_volume_spec("tiny", "1Mi", storage_class="standard", data_source=snap.name),
                   cluster=cluster, run=run)


def test_snapshot_source_checks(cluster: Cluster, run: RunInfo) -> None:
    with pytest.raises(ResourceSpecError, match=f"pvc: no PersistentVolumeClaim 'nope' in namespace '{cluster.namespace}'"):
        run_snapshot(build_snapshot_spec("s", pvc="nope"), cluster=cluster, run=run)
    with pytest.raises(ResourceSpecError, match="pvc, volume: give exactly one of them"):
        run_snapshot(build_snapshot_spec("s", late_inputs=True), cluster=cluster, run=run, pvc="a", volume="b")
    volume = run_volume(build_volume_spec("c", "1Gi", storage_class="standard"), cluster=cluster, run=run)
    with pytest.raises(ResourceSpecError, match="snapshot_class: the cluster has no VolumeSnapshotClass 'gold'; allowed: local-snapshots"):
        run_snapshot(build_snapshot_spec("s", pvc=volume.name, snapshot_class="gold"), cluster=cluster, run=run)
    with pytest.raises(ResourceSpecError, match="data_source: no VolumeSnapshot 'ghost'"):
        run_volume(build_volume_spec("r", "1Gi", data_source="ghost"), cluster=cluster, run=run)


# --------------------------------------------------------------------------- #
# Real ZenML pipelines (subprocess, own ZenML state)
# --------------------------------------------------------------------------- #

PIPELINE = textwrap.dedent(
    """
    import json, os, sys
    from zenml import pipeline, step
    from zenml.client import Client
    from k8s_step_operator.steps import cleanup_run_resources, resource_step, volume_step

    make_cm = resource_step(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pipeline-cm"}, "data": {"answer": "42"}},
        cleanup=os.environ.get("CM_CLEANUP", "never"),
        success_condition="data.answer==42", attribute_outputs={"answer": "{.data.answer}"},
    )
    make_volume = volume_step("work", size="1Gi", storage_class="standard")

    @step
    def consume(volume: str, answer: str) -> str:
        if os.environ.get("FAIL_CONSUME"):
            raise RuntimeError("consumer failed on purpose")
        return f"{volume}:{answer}"

    @pipeline(enable_cache=False, on_success=cleanup_run_resources, on_failure=cleanup_run_resources)
    def resources_pipeline():
        _name, _manifest, answer = make_cm()
        vol, _vm, _size = make_volume()
        consume(vol, answer)

    if __name__ == "__main__":
        try:
            run = resources_pipeline()
        except Exception as exc:
            print("PIPELINE-FAILED", exc)
        run = Client().get_pipeline(resources_pipeline.name).last_run
        steps = run.steps
        out = {"status": str(run.status.value), "run_name": run.name, "run_id": str(run.id)}
        for step_name, step_run in steps.items():
            for key, artifacts in step_run.outputs.items():
                value = artifacts[0].load()
                out[f"{step_name}.{key}"] = value
        print("RESULT " + json.dumps(out, default=str))
    """
)


def _zenml_env(root: Path, namespace: str, kubeconfig: Path) -> dict[str, str]:
    return zenml_env(root, K8SSO_NAMESPACE=namespace, KUBECONFIG=str(kubeconfig), PYTHONPATH=src_on_pythonpath())


@pytest.fixture
def zenml_repo(tmp_path: Path, namespace: str, local_cluster: Any) -> tuple[Path, dict[str, str]]:
    """A ZenML repository in a tmp dir whose active stack has a ``k8s`` step operator for the test namespace.

    The steps find the cluster and namespace through that step operator (KUBECONFIG is unset).
    """
    env = _zenml_env(tmp_path, namespace, local_cluster.kubeconfig)
    env.pop("KUBECONFIG")

    def zenml(*args: str) -> None:
        proc = subprocess.run([str(BIN / "zenml"), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=180)
        assert proc.returncode == 0, f"zenml {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"

    zenml("init")
    zenml("step-operator", "flavor", "register", "k8s_step_operator.flavor.K8sStepOperatorFlavor")
    zenml("step-operator", "register", "k8s-local", "--flavor=k8s", f"--kubernetes_namespace={namespace}",
          f"--kubeconfig={local_cluster.kubeconfig}", "--local=True")
    zenml("stack", "register", "k8s-stack", "-o", "default", "-a", "default", "-s", "k8s-local", "--set")
    (tmp_path / "resources_pipeline.py").write_text(PIPELINE)
    return tmp_path, env


def _run_pipeline(root: Path, env: dict[str, str], **extra: str) -> tuple[dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, "resources_pipeline.py"], cwd=root, env={**env, **extra}, capture_output=True, text=True,
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no result ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULT "):]), proc.stdout + proc.stderr


def test_pipeline_outputs_and_cleanup_hook(zenml_repo: tuple[Path, dict[str, str]], cluster: Cluster) -> None:
    root, env = zenml_repo
    result, logs = _run_pipeline(root, env)
    assert result["status"] == "completed", logs[-4000:]
    assert result["create_configmap.name"] == "pipeline-cm"
    assert result["create_configmap.answer"] == "42"
    assert result["create_configmap.manifest"]["data"] == {"answer": "42"}
    pvc_name = result["volume_work.name"]
    assert pvc_name.endswith("-work") and result["volume_work.size"]
    assert result["consume.output"] == f"{pvc_name}:42"
    # The volume (cleanup on-run-end by default) is gone after the run; the ConfigMap (never) stays.
    wait_gone(cluster, f"/api/v1/namespaces/{cluster.namespace}/persistentvolumeclaims", pvc_name, timeout=60)
    kept = raw(cluster, "GET", f"/api/v1/namespaces/{cluster.namespace}/configmaps/pipeline-cm")
    assert kept["metadata"]["labels"][RUN_ID_LABEL] == result["run_id"]


def test_pipeline_failure_still_cleans_up(zenml_repo: tuple[Path, dict[str, str]], cluster: Cluster) -> None:
    root, env = zenml_repo
    result, logs = _run_pipeline(root, env, FAIL_CONSUME="1", CM_CLEANUP="on-success")
    assert result["status"] == "failed", logs[-4000:]
    pvc_name = result["volume_work.name"]
    wait_gone(cluster, f"/api/v1/namespaces/{cluster.namespace}/persistentvolumeclaims", pvc_name, timeout=60)
    # on-success objects are kept when the run failed (for debugging).
    raw(cluster, "GET", f"/api/v1/namespaces/{cluster.namespace}/configmaps/pipeline-cm")


# --------------------------------------------------------------------------- #
# Logs of what a resource step starts (#14 item 6)
# --------------------------------------------------------------------------- #


def _busybox() -> str:
    from k8sso_localcluster.images import current

    return current("busybox")


def _job(name: str, script: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": _busybox(), "command": ["sh", "-c", script]}]}}},
    }


def test_created_job_streams_its_pods_logs(cluster: Cluster, run: RunInfo, capsys: pytest.CaptureFixture[str]) -> None:
    """Seed 002's complaint about ResourceOp: here a Job's pod prints into the step's output as it runs."""
    name = f"logs-{uuid.uuid4().hex[:6]}"
    spec = build_resource_spec(_job(name, "for i in 1 2 3; do echo line $i; sleep 0.3; done"),
                               options=StepOptions(success_condition="status.succeeded > 0", failure_condition="status.failed > 0",
                                                   timeout=180))
    run_resource(spec, cluster=cluster, run=run)
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("[step]")] == ["[step] line 1", "[step] line 2", "[step] line 3"]


def test_failed_job_logs_stream_and_opt_out(cluster: Cluster, run: RunInfo, capsys: pytest.CaptureFixture[str]) -> None:
    """A failing Job's last words reach the output before the step fails; ``stream_logs=False`` prints none."""
    spec = build_resource_spec(_job(f"fail-{uuid.uuid4().hex[:6]}", "echo about to fail; exit 3"),
                               options=StepOptions(success_condition="status.succeeded > 0", failure_condition="status.failed > 0",
                                                   timeout=180))
    with pytest.raises(ConditionFailed):
        run_resource(spec, cluster=cluster, run=run)
    assert "[step] about to fail" in capsys.readouterr().out
    quiet = build_resource_spec(_job(f"quiet-{uuid.uuid4().hex[:6]}", "echo not shown"),
                                options=StepOptions(success_condition="status.succeeded > 0", timeout=180), stream_logs=False)
    run_resource(quiet, cluster=cluster, run=run)
    assert "not shown" not in capsys.readouterr().out


def test_created_pod_with_two_containers_prefixes_each(cluster: Cluster, run: RunInfo, capsys: pytest.CaptureFixture[str]) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"two-{uuid.uuid4().hex[:6]}"},
           "spec": {"restartPolicy": "Never", "containers": [
               {"name": "left", "image": _busybox(), "command": ["sh", "-c", "echo from left"]},
               {"name": "right", "image": _busybox(), "command": ["sh", "-c", "echo from right"]}]}}
    spec = build_resource_spec(pod, options=StepOptions(
        success_condition="status.phase == Succeeded", failure_condition="status.phase == Failed", timeout=180
    ))
    run_resource(spec, cluster=cluster, run=run)
    out = capsys.readouterr().out
    assert "[step:left] from left" in out and "[step:right] from right" in out

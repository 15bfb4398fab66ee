"""Bad input: every case is refused with an error naming the field and what is allowed,
and the namespace (and the cluster's volumes) hold nothing new afterwards.

Operator settings go through ``K8sStepOperator.submit`` exactly as ZenML hands them
over (component config overlaid with the step's settings); resource, volume and snapshot
steps through the public factories (``resource_step``, ``volume_step``, ``snapshot_step``)
and, where the check needs the cluster, their runtime with an explicit cluster.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from k8s_step_operator.kube.podwatch import PodWatch
from k8s_step_operator.steps import REQUIRED, cel_step, custom_task_step, resource_step, snapshot_step, volume_step
from k8s_step_operator.steps.cluster import Cluster, connect
from k8s_step_operator.steps.resource_runtime import RunInfo
from k8s_step_operator.steps.volume_runtime import run_volume
from k8s_step_operator.steps.volume_spec import build_volume_spec

from .conftest import Drill, delete_namespace, make_drill, make_namespace

pytestmark = pytest.mark.cluster

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "never-created"}}
PVC = {
    "apiVersion": "v1",
    "kind": "PersistentVolumeClaim",
    "metadata": {"name": "never-created"},
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
}


@dataclass(frozen=True)
class Case:
    id: str
    call: Callable[[Any], Any]  # gets the module context (operator drill, cluster)
    field: str  # the error names this field ...
    allowed: str  # ... and says what is allowed


def settings_case(id: str, settings: dict, field: str, allowed: str) -> Case:
    def call(ctx: "Context") -> Any:
        return ctx.drill.submit(ctx.drill.step("bad-" + id, "print('must never run')", settings=settings))

    return Case(id, call, field, allowed)


def P(**pod_settings: Any) -> dict:  # noqa: N802 - reads like the settings key
    return {"pod_settings": pod_settings}


SETTINGS_CASES = [
    settings_case("quantity-suffix", P(resources={"limits": {"memory": "4 GB"}}),
                  "pod_settings.resources.limits['memory']", "Ki, Mi, Gi"),
    settings_case("quantity-negative", P(resources={"requests": {"cpu": "-1"}}),
                  "pod_settings.resources.requests['cpu']", "only quantities >= 0 are allowed"),
    settings_case("request-over-limit", P(resources={"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}),
                  "pod_settings.resources.requests['memory']", "a request must be <= its limit"),
    settings_case("resource-name", P(resources={"limits": {"memroy": "1Gi"}}),
                  "resources.limits[memroy]", "must be a standard resource type or fully qualified"),
    settings_case("label-key", P(labels={"bad key!": "x"}), "pod_settings.labels", "allowed: an optional DNS-1123"),
    settings_case("label-value", P(labels={"team": "x" * 64}), "pod_settings.labels['team']",
                  "allowed: empty, or at most 63 characters"),
    settings_case("label-reserved", P(labels={"step": "mine"}), "pod_settings.labels['step']",
                  "any key except"),
    settings_case("node-selector-key", P(node_selectors={"-bad": "x"}), "pod_settings.node_selectors",
                  "allowed: an optional DNS-1123"),
    settings_case("annotation-reserved", P(annotations={"k8s-step-operator.zenml.io/x": "y"}),
                  "pod_settings.annotations['k8s-step-operator.zenml.io/x']", "reserved for the operator"),
    settings_case("unknown-pod-field", P(node_selector={"a": "b"}), "pod_settings.node_selector",
                  "did you mean 'node_selectors'?"),
    settings_case("unknown-affinity-field", P(affinity={"nodeAffinty": {}}), "pod_settings.affinity.nodeAffinty",
                  "allowed: node_affinity, pod_affinity, pod_anti_affinity"),
    settings_case("wrong-type-timeout", {"startup_timeout": "soon"}, "startup_timeout", "valid number"),
    settings_case("wrong-type-tolerations", P(tolerations="gpu"), "pod_settings.tolerations", "expected a list"),
    settings_case("wrong-type-security", P(security_context={"runAsUser": "root"}),
                  "pod_settings.security_context.runAsUser", "expected int"),
    settings_case("toleration-operator", P(tolerations=[{"key": "gpu", "operator": "Maybe"}]),
                  "pod_settings.tolerations[0].operator", "allowed: Equal, Exists"),
    settings_case("pull-policy", P(image_pull_policy="Sometimes"), "pod_settings.image_pull_policy",
                  "allowed: Always, IfNotPresent, Never"),
    settings_case("cleanup-policy", {"cleanup_policy": "sometimes"}, "cleanup_policy",
                  "'keep', 'delete' or 'delete-succeeded'"),
    settings_case("volume-without-name", P(volumes=[{"emptyDir": {}}]), "pod_settings.volumes[0].name", "required"),
    settings_case("mount-without-path", P(volume_mounts=[{"name": "data"}]),
                  "pod_settings.volume_mounts[0].mountPath", "required"),
    settings_case("sidecar-named-main", P(sidecar_containers=[{"name": "main", "image": "x"}]),
                  "pod_settings.sidecar_containers[0].name", "reserved for the step container"),
    settings_case("shm-size", P(shm_size="lots"), "pod_settings.shm_size", "Ki, Mi, Gi"),
    settings_case("namespace", {"kubernetes_namespace": "Bad_NS"}, "kubernetes_namespace",
                  "lowercase letters, digits and '-'"),
    settings_case("pod-count", {"pod_count": 2}, "pod_count", "allowed: 1"),
    settings_case("negative-grace", {"delete_grace_period_seconds": -1}, "delete_grace_period_seconds", ">= 0"),
    settings_case("pvolumes-relative", {"pvolumes": {"data": "claim"}}, "pvolumes['data']", "must be absolute"),
    settings_case("pvolumes-two-sources", {"pvolumes": {"/d": {"claim": "a", "volume": {"emptyDir": {}}}}},
                  "pvolumes['/d']", "give only one of input, claim, volume (got claim and volume)"),
    settings_case("pvolumes-sub-path", {"pvolumes": {"/d": {"claim": "a", "sub_path": "../up"}}},
                  "pvolumes['/d'].sub_path", "without '..'"),
    # a good per-run workspace beside a bad one: refused before the good one's claim is created
    settings_case("workspace-claim-and-template", {"workspaces": {
        "ok": {"claim_template": {"resources": {"requests": {"storage": "1Mi"}}}},
        "ws": {"claim": "a", "claim_template": {"resources": {"requests": {"storage": "1Mi"}}}}}},
                  "workspaces['ws']", "give only one of claim, volume, claim_template (got claim and claim_template)"),
    settings_case("workspace-unknown-kind", {"workspaces": {"ws": {"kind": "pvc"}}}, "workspaces['ws'].kind",
                  "allowed: claim, volume, claim_template, mount_path, sub_path, read_only"),
    settings_case("workspace-relative-mount", {"workspaces": {"ws": {"claim": "a", "mount_path": "data"}}},
                  "workspaces['ws'].mount_path", "must be absolute"),
    settings_case("workspace-no-source", {"workspaces": {"ok": {"claim_template": {"resources": {"requests": {
        "storage": "1Mi"}}}}, "ws": {"read_only": True}}}, "workspaces['ws']", "give one of claim, volume, claim_template"),
    settings_case("pipeline-env-name", {"pipeline_env": {"1X": "v"}}, "pipeline_env['1X']", "not a valid variable name"),
    settings_case("pod-template-missing", P(pod_template_file="/nonexistent/drill-template.yaml"),
                  "pod_settings.pod_template_file", "cannot read file"),
]


def step_call(factory: Callable[[], Any], call: bool = False) -> Callable[[Any], Any]:
    """Build the step (definition-time checks); with ``call``, also bind it like a pipeline does."""

    def run(_ctx: Any) -> Any:
        step = factory()
        return step() if call else step

    return run


STEP_CASES = [
    Case("resource-action", step_call(lambda: resource_step(CM, action="explode")), "action",
         "allowed: get, create, apply, delete, replace, patch"),
    Case("resource-missing-kind", step_call(lambda: resource_step({"apiVersion": "v1", "metadata": {"name": "x"}})),
         "k8s_resource.kind", "every object needs apiVersion and kind"),
    Case("resource-missing-apiversion", step_call(lambda: resource_step({"kind": "ConfigMap", "metadata": {"name": "x"}})),
         "k8s_resource.apiVersion", "every object needs apiVersion and kind"),
    Case("resource-missing-name", step_call(lambda: resource_step({"apiVersion": "v1", "kind": "ConfigMap"}), call=True),
         "resource_name", "give metadata.name, resource_name=..."),
    Case("resource-condition-parse", step_call(lambda: resource_step(CM, success_condition="status.phase == = x")),
         "success_condition", "cannot parse"),
    Case("resource-condition-empty-segment", step_call(lambda: resource_step(CM, failure_condition="status..phase==x")),
         "failure_condition", "Allowed requirements"),
    Case("resource-cel-compile", step_call(lambda: resource_step(CM, success_condition="object.status.phase ==")),
         "success_condition", "does not compile"),
    Case("resource-cel-prefixed", step_call(lambda: resource_step(CM, failure_condition="cel: object.status.x &&")),
         "failure_condition", "does not compile"),
    Case("resource-jsonpath", step_call(lambda: resource_step(CM, attribute_outputs={"o": "{.status.foo["})),
         "attribute_outputs['o']", "cannot parse JSONPath"),
    Case("resource-output-name", step_call(lambda: resource_step(CM, attribute_outputs={"bad name!": "{.x}"})),
         "attribute_outputs", "allowed: 1-63 characters"),
    Case("resource-merge-with-create", step_call(lambda: resource_step(CM, merge_strategy="merge")),
         "merge_strategy", "only used with action='patch'"),
    Case("resource-timeout", step_call(lambda: resource_step(CM, timeout=-5)), "timeout", "give seconds > 0"),
    Case("resource-cleanup", step_call(lambda: resource_step(CM, cleanup="sometimes")), "cleanup",
         "allowed: never, on-run-end, on-success"),
    Case("resource-json-patch-op", step_call(lambda: resource_step(
        [{"op": "frobnicate", "path": "/data"}], action="patch", merge_strategy="json",
        api_version="v1", kind="ConfigMap", resource_name="x")),
         "k8s_resource[0].op", "allowed: add, remove, replace, move, copy, test"),
    Case("resource-two-documents", step_call(lambda: resource_step("a: 1\n---\nb: 2\n")), "k8s_resource[0]",
         "every object needs apiVersion and kind"),
    Case("resource-list-unbound-field", step_call(lambda: resource_step([CM, {**CM, "data": {"n": "{{inputs.n}}"}}]),
                                                  call=True), "n", "bind it when calling the step"),
    Case("volume-unknown-input", step_call(lambda: volume_step("v", "1Gi").__call__(sizes="2Gi")), "sizes",
         "its inputs: resource_name, size, storage_class, annotations, data_source"),
    Case("cel-compile", step_call(lambda: cel_step("flip ==")), "expression", "does not compile"),
    Case("cel-unbound", step_call(lambda: cel_step("flip == 'heads'"), call=True), "flip", "bind it when calling"),
    Case("custom-task-both", step_call(lambda: custom_task_step("a.example.com/v1", "T", "t", task_spec={},
                                                                task_ref="x")), "task_spec, task_ref",
         "give exactly one"),
    Case("custom-task-required", step_call(lambda: custom_task_step("a.example.com/v1", "T", "t", task_spec={},
                                                                    params={"a": REQUIRED}), call=True), "a",
         "is required"),
    Case("resource-propagation", step_call(lambda: resource_step(CM, action="delete", propagation_policy="Now")),
         "propagation_policy", "allowed: Background, Foreground, Orphan"),
    Case("resource-owner-string", step_call(lambda: resource_step(CM, set_owner_reference="pod/x")),
         "set_owner_reference", "give the owner as a mapping"),
    Case("volume-quantity", step_call(lambda: volume_step("v", "1 gig")), "size", "Ki, Mi, Gi"),
    Case("volume-zero", step_call(lambda: volume_step("v", "0")), "size", "a volume needs a size > 0"),
    Case("volume-both-resource-and-size", step_call(lambda: volume_step("v", "1Gi", k8s_resource=PVC)),
         "k8s_resource", "give either k8s_resource or size"),
    Case("volume-mode", step_call(lambda: volume_step("v", "1Gi", modes="RWZ")), "modes",
         "allowed: ReadWriteOnce (RWO)"),
    Case("volume-mode-block", step_call(lambda: volume_step("v", "1Gi", volume_mode="Blocky")), "volume_mode",
         "allowed: Filesystem, Block"),
    Case("volume-data-source", step_call(lambda: volume_step("v", "1Gi", data_source="bogus/x")), "data_source",
         "allowed: a VolumeSnapshot name"),
    Case("volume-annotation-key", step_call(lambda: volume_step("v", "1Gi", annotations={"bad key!": "x"})),
         "annotations", "allowed: an optional DNS-1123"),
    Case("volume-no-size", step_call(lambda: volume_step("v"), call=True), "size",
         "it may only be left out with a data_source"),
    Case("snapshot-both-pvc-and-volume", step_call(lambda: snapshot_step("s", pvc="a", volume="b")), "pvc, volume",
         "give exactly one of them"),
    Case("snapshot-no-source", step_call(lambda: snapshot_step("s"), call=True), "pvc, volume", "give pvc=... or volume=..."),
    Case("snapshot-api-version", step_call(lambda: snapshot_step(k8s_resource={
        "apiVersion": "snapshot.storage.k8s.io/v1beta1", "kind": "VolumeSnapshot", "metadata": {"name": "x"}})),
         "k8s_resource.apiVersion", "allowed: snapshot.storage.k8s.io/v1"),
    Case("snapshot-name", step_call(lambda: snapshot_step("!!!", pvc="a")), "resource_name", "no letters or digits"),
]


def _unknown_class(ctx: "Context") -> Any:
    spec = build_volume_spec("v", "1Gi", storage_class="no-such-class")
    return run_volume(spec, cluster=ctx.cluster, run=RunInfo(run_id=str(uuid.uuid4()), run_name="bad"))


# A ReadWriteMany claim on a single-node class is not refused before the claim exists: on a real cluster
# only the class's provisioner knows (tests/cluster/test_resource_steps.py checks its "modes:" error).
CLUSTER_CASES = [
    Case("volume-unknown-storage-class", _unknown_class, "storage_class", "allowed: local-rwo, local-wffc, standard"),
]

ALL_CASES = SETTINGS_CASES + STEP_CASES + CLUSTER_CASES


@dataclass
class Context:
    drill: Drill
    cluster: Cluster
    namespace: str
    api: client.ApiClient
    baseline: dict


def inventory(api: client.ApiClient, namespace: str) -> dict[str, list[str]]:
    """What the namespace holds (and the cluster's PersistentVolumes)."""
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    snapshots = custom.list_namespaced_custom_object("snapshot.storage.k8s.io", "v1", namespace, "volumesnapshots")
    return {
        "pods": sorted(o.metadata.name for o in core.list_namespaced_pod(namespace).items),
        "jobs": sorted(o.metadata.name for o in client.BatchV1Api(api).list_namespaced_job(namespace).items),
        "secrets": sorted(o.metadata.name for o in core.list_namespaced_secret(namespace).items),
        # kube-root-ca.crt: the controller-manager's own, put into every namespace some time after it is made
        "configmaps": sorted(o.metadata.name for o in core.list_namespaced_config_map(namespace).items
                             if o.metadata.name != "kube-root-ca.crt"),
        "pvcs": sorted(o.metadata.name for o in core.list_namespaced_persistent_volume_claim(namespace).items),
        "volumesnapshots": sorted(o["metadata"]["name"] for o in snapshots["items"]),
        "persistentvolumes": sorted(o.metadata.name for o in core.list_persistent_volume().items),
    }


def added(api: client.ApiClient, namespace: str, baseline: dict) -> dict[str, list[str]]:
    """What exists now and did not at ``baseline`` (volumes other tests release may vanish meanwhile)."""
    now = inventory(api, namespace)
    return {kind: new for kind, names in now.items() if (new := sorted(set(names) - set(baseline[kind])))}


@pytest.fixture(scope="module")
def ctx(local_cluster: Any, api_client: client.ApiClient, module_mocker: Any) -> Iterator[Context]:
    namespace = make_namespace(api_client, "d-bad-input")
    store = module_mocker.MagicMock(name="zen_store")
    from .conftest import Console, LogRecords

    drill = make_drill(local_cluster.kubeconfig, api_client, namespace, module_mocker, store, Console(), LogRecords())
    cluster = connect(namespace, kubeconfig=str(local_cluster.kubeconfig))
    try:
        yield Context(drill, cluster, namespace, api_client, inventory(api_client, namespace))
    finally:
        cluster.api.close()
        PodWatch.close_all()
        delete_namespace(api_client, namespace)


def test_at_least_thirty_cases() -> None:
    assert len(ALL_CASES) >= 30
    assert len({c.id for c in ALL_CASES}) == len(ALL_CASES)


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_bad_input_is_refused_naming_field_and_allowed_and_leaves_nothing(case: Case, ctx: Context) -> None:
    with pytest.raises((ValueError, ApiException)) as info:
        case.call(ctx)
    message = str(info.value)
    if isinstance(info.value, ApiException):  # refused by the API server: its Status message
        message = info.value.body if isinstance(info.value.body, str) else str(info.value.body)
    assert case.field in message, message
    assert case.allowed in message, message
    assert added(ctx.api, ctx.namespace, ctx.baseline) == {}


def test_unknown_top_level_setting_is_refused(ctx: Context) -> None:
    step = ctx.drill.step("bad-typo", "print('must never run')", settings={"startup_timout": 5})
    try:
        with pytest.raises(ValueError, match="startup_timout") as info:
            ctx.drill.submit(step)
        assert "startup_timeout" in str(info.value)  # the suggestion / allowed fields
    finally:  # if it was accepted, do not leave its pod and Secret behind
        from .conftest import bounded

        try:
            bounded(lambda: ctx.drill.operator.cancel(step.run), 60, "cancel")
        except ValueError:  # the fixed operator may refuse the bad settings here too: nothing to cancel
            pass
    assert added(ctx.api, ctx.namespace, ctx.baseline) == {}

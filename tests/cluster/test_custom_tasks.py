"""Custom-task steps, lists of objects and runtime-bound inputs against the local control plane."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from k8s_step_operator.steps.cluster import Cluster
from k8s_step_operator.steps.custom_task_runtime import run_custom_task
from k8s_step_operator.steps.custom_task_spec import CUSTOM_TASK_OPTIONS, REQUIRED, build_custom_task_spec
from k8s_step_operator.steps.errors import ConditionFailed, ResourceStepError
from k8s_step_operator.steps.resource_list import build_resource_list_spec
from k8s_step_operator.steps.resource_runtime import RunInfo, run_resource, run_resource_list
from k8s_step_operator.steps.resource_spec import ResourceSpecError, build_resource_spec, load_resource
from k8s_step_operator.steps.volume_runtime import run_volume
from k8s_step_operator.steps.volume_spec import build_volume_spec

from .custom_task_controller import TASK_API_VERSION, SumController, custom_task_world

pytestmark = pytest.mark.cluster


@pytest.fixture
def controller(cluster: Cluster, namespace: str) -> Iterator[SumController]:
    yield from custom_task_world(cluster.api, namespace)


def _sum() -> Any:
    return build_custom_task_spec(
        TASK_API_VERSION, "Sum", "add", task_spec={"operation": "add", "result": "sum"},
        params={"a": REQUIRED, "b": 1}, results=["sum"], options=CUSTOM_TASK_OPTIONS.replace(timeout=60),
    )


def test_custom_task_succeeds_with_results(cluster: Cluster, run: RunInfo, controller: SumController) -> None:
    result = run_custom_task(_sum(), {"a": 41}, cluster=cluster, run=run)
    assert result.outputs == {"sum": "42"}
    assert result.name.startswith("add-") and result.name in controller.seen_unknown
    assert result.manifest["spec"]["params"] == [{"name": "a", "value": "41"}, {"name": "b", "value": "1"}]
    assert result.manifest["spec"]["customSpec"]["kind"] == "Sum"


def test_custom_task_false_fails_with_reason_and_message(
    cluster: Cluster, run: RunInfo, controller: SumController
) -> None:
    with pytest.raises(ConditionFailed) as caught:
        run_custom_task(_sum(), {"a": "many"}, cluster=cluster, run=run)
    text = str(caught.value)
    assert text.startswith("Sum custom task (CustomRun ")
    assert "failed: Succeeded=False (InvalidParams): params a='many' and b='1' must be numbers" in text


def test_custom_task_task_ref_and_cel_condition(cluster: Cluster, run: RunInfo, controller: SumController) -> None:
    spec = build_custom_task_spec(
        TASK_API_VERSION, "Sum", "times", task_ref={"name": "multiply"}, params={"a": 6, "b": 7},
        results=["product"],
        options=CUSTOM_TASK_OPTIONS.replace(
            success_condition="object.status.results.exists(r, r.name == 'product')", timeout=60
        ),
    )
    result = run_custom_task(spec, {}, cluster=cluster, run=run)
    assert result.outputs == {"product": "42"}
    assert result.manifest["spec"]["customRef"] == {"apiVersion": TASK_API_VERSION, "kind": "Sum", "name": "multiply"}


def test_custom_task_missing_result_fails(cluster: Cluster, run: RunInfo, controller: SumController) -> None:
    spec = build_custom_task_spec(
        TASK_API_VERSION, "Sum", "add", task_spec={"operation": "add", "result": "sum"},
        params={"a": 1, "b": 2}, results=["sum", "carry"], options=CUSTOM_TASK_OPTIONS.replace(timeout=60),
    )
    with pytest.raises(ResourceStepError, match=r"results: Sum run add-\w+ finished without result\(s\) carry; "
                                                r"it reported: sum"):
        run_custom_task(spec, {}, cluster=cluster, run=run)


def test_custom_task_unbound_required_param(cluster: Cluster, run: RunInfo) -> None:
    with pytest.raises(ResourceSpecError, match="a: the custom task's param 'a' is required"):
        run_custom_task(_sum(), {}, cluster=cluster, run=run)


def _configmaps(*names: str) -> str:
    return "---\n".join(f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {n}\ndata:\n  n: '{n}'\n" for n in names)


def test_list_of_objects_create_apply_delete(cluster: Cluster, run: RunInfo, namespace: str) -> None:
    created = run_resource_list(
        build_resource_list_spec(load_resource(_configmaps("first", "second")), attribute_outputs={"uid": "{.metadata.uid}"}),
        cluster=cluster, run=run,
    )
    assert created["name"] == ["first", "second"]
    assert [m["data"]["n"] for m in created["manifest"]] == ["first", "second"]
    assert all(created["uid"]) and len(set(created["uid"])) == 2
    docs = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}, "data": {"n": "{{inputs.n}}"}}
            for n in ("first", "second")]
    applied = run_resource_list(build_resource_list_spec(docs, action="apply", force=True), cluster=cluster, run=run,
                                inputs={"n": "7"})
    assert [m["data"]["n"] for m in applied["manifest"]] == ["7", "7"]
    deleted = run_resource_list(build_resource_list_spec(docs, action="delete"), cluster=cluster, run=run,
                                inputs={"n": "7"})
    assert deleted["name"] == ["first", "second"] and deleted.values(("name",)) == ["first", "second"]
    with pytest.raises(ResourceStepError, match="ConfigMap .*/first not found"):
        run_resource(build_resource_spec(action="get", api_version="v1", kind="ConfigMap", resource_name="first"),
                     cluster=cluster, run=run)


def test_manifest_fields_and_volume_arguments_bound_at_run_time(cluster: Cluster, run: RunInfo) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "{{inputs.which}}"},
          "data": {"replicas": "{{inputs.replicas}}", "note": "size {{inputs.replicas}}"}}
    made = run_resource(build_resource_spec(cm), cluster=cluster, run=run, inputs={"which": "bound", "replicas": "3"})
    assert made.name == "bound" and made.manifest["data"] == {"replicas": "3", "note": "size 3"}
    with pytest.raises(ResourceSpecError, match=r"replicas: k8s_resource uses \{\{inputs.replicas\}\}"):
        run_resource(build_resource_spec(cm), cluster=cluster, run=run, inputs={"which": "x"})
    volume = run_volume(
        build_volume_spec(late_inputs=True), cluster=cluster, run=run,
        inputs={"resource_name": "late", "size": "64Mi", "storage_class": "standard", "annotations": {"team": "ml"}},
    )
    assert volume.name == "itest-late" and volume.outputs["size"] == "64Mi"
    assert volume.manifest["spec"]["storageClassName"] == "standard"
    assert volume.manifest["metadata"]["annotations"]["team"] == "ml"
    with pytest.raises(ResourceSpecError, match="size: '-1Gi'"):
        run_volume(build_volume_spec(late_inputs=True), cluster=cluster, run=run,
                   inputs={"resource_name": "bad", "size": "-1Gi"})

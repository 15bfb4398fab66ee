"""Resource-step options (no cluster): normalisation, validation, clean-up decisions (discovery: test_discovery.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from k8s_step_operator.steps.errors import Forbidden, describe_status, translate_api_error
from k8s_step_operator.steps.resource_spec import (
    RESOURCE_OPTIONS,
    ResourceSpec,
    ResourceSpecError,
    StepOptions,
    build_resource_spec,
    load_resource,
    normalize_owner,
    read_resource,
    validate_json_patch,
)
from k8s_step_operator.steps.run_end import entries_to_delete, run_is_over, run_succeeded

CM: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1"}}
CM_YAML = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm
data:
  a: "1"
"""


def error_of(**kwargs: Any) -> str:
    """The error of building a resource step's spec as ``resource_step(**kwargs)`` does (the shared options first)."""
    shared = {f for f in StepOptions.__dataclass_fields__}
    with pytest.raises(ResourceSpecError) as info:
        options = RESOURCE_OPTIONS.with_arguments(kwargs)
        build_resource_spec(**{k: v for k, v in kwargs.items() if k not in shared}, options=options)
    return str(info.value)


# --------------------------------------------------------------------------- #
# Normalisation
# --------------------------------------------------------------------------- #


class TestLoadResource:
    def test_dict_is_copied(self) -> None:
        data = load_resource(CM)
        assert data == CM and data is not CM
        data["data"]["a"] = "2"
        assert CM["data"]["a"] == "1"

    def test_yaml_text(self) -> None:
        assert load_resource(CM_YAML) == CM

    def test_json_text(self) -> None:
        assert load_resource(json.dumps(CM)) == CM

    def test_file_path_string_and_path_are_read_where_the_step_is_defined(self, tmp_path: Path) -> None:
        path = tmp_path / "cm.yaml"
        path.write_text(CM_YAML)
        assert read_resource(str(path)) == CM
        assert read_resource(path) == CM
        json_path = tmp_path / "cm.json"
        json_path.write_text(json.dumps(CM))
        assert read_resource(str(json_path)) == CM
        assert read_resource(CM_YAML) == CM  # anything else as load_resource takes it
        with pytest.raises(ResourceSpecError, match=r"^k8s_resource: '.*cm.yaml' is a file path; read it with read_resource"):
            load_resource(str(path))  # the pure loader reads no file

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ResourceSpecError, match=r"k8s_resource: file .* does not exist"):
            read_resource(str(tmp_path / "nope.yaml"))
        (tmp_path / "bad.yaml").write_text("a: [")
        with pytest.raises(ResourceSpecError, match=r"k8s_resource: file '.*bad.yaml' is not valid YAML"):
            read_resource(tmp_path / "bad.yaml")

    def test_model_object(self) -> None:
        job = client.V1Job(
            api_version="batch/v1",
            kind="Job",
            metadata=client.V1ObjectMeta(generate_name="job-"),
            spec=client.V1JobSpec(
                template=client.V1PodTemplateSpec(
                    spec=client.V1PodSpec(
                        restart_policy="Never",
                        containers=[client.V1Container(name="c", image="busybox", command=["env"])],
                    )
                )
            ),
        )
        data = load_resource(job)
        assert data["metadata"] == {"generateName": "job-"}
        assert data["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        assert data["spec"]["template"]["spec"]["containers"][0]["command"] == ["env"]

    def test_several_documents_are_a_list(self) -> None:
        data = load_resource(CM_YAML + "---\n" + CM_YAML)
        assert isinstance(data, list) and len(data) == 2 and data[0]["kind"] == "ConfigMap"

    def test_scalar_rejected(self) -> None:
        with pytest.raises(ResourceSpecError, match="expected an object"):
            load_resource("just text")

    def test_bad_yaml(self) -> None:
        with pytest.raises(ResourceSpecError, match="k8s_resource: the text is not valid YAML"):
            load_resource("a: [b")

    def test_wrong_type(self) -> None:
        with pytest.raises(ResourceSpecError, match="k8s_resource: got int; allowed: a dict"):
            load_resource(3)

    def test_none(self) -> None:
        with pytest.raises(ResourceSpecError, match="k8s_resource: required"):
            load_resource(None)


# --------------------------------------------------------------------------- #
# Bad input: each error names the field and what is allowed
# --------------------------------------------------------------------------- #


class TestBadInput:
    def test_missing_kind(self) -> None:
        message = error_of(k8s_resource={"apiVersion": "v1", "metadata": {"name": "x"}})
        assert message.startswith("k8s_resource.kind: missing")
        assert "apiVersion and kind" in message

    def test_missing_api_version(self) -> None:
        message = error_of(k8s_resource={"kind": "ConfigMap", "metadata": {"name": "x"}})
        assert message.startswith("k8s_resource.apiVersion: missing")

    def test_missing_name(self) -> None:
        message = error_of(k8s_resource={"apiVersion": "v1", "kind": "ConfigMap", "data": {}})
        assert message.startswith("k8s_resource.metadata.name: missing")
        assert "generateName" in message

    def test_bad_name(self) -> None:
        message = error_of(k8s_resource={**CM, "metadata": {"name": "a/b"}})
        assert message.startswith("k8s_resource.metadata.name:") and "allowed" in message

    def test_bad_action(self) -> None:
        message = error_of(k8s_resource=CM, action="upsert")
        assert message == "action: 'upsert' is not allowed; allowed: get, create, apply, delete, replace, patch"

    def test_bad_merge_strategy(self) -> None:
        message = error_of(k8s_resource=CM, action="patch", merge_strategy="deep")
        assert message == "merge_strategy: 'deep' is not allowed; allowed: strategic, merge, json"

    def test_merge_strategy_needs_patch(self) -> None:
        assert error_of(k8s_resource=CM, action="apply", merge_strategy="merge").startswith(
            "merge_strategy: only used with action='patch'"
        )

    def test_condition_does_not_parse(self) -> None:
        message = error_of(k8s_resource=CM, success_condition="status.phase == Running || x")
        assert message.startswith("success_condition: cannot parse condition")
        assert "Allowed requirements" in message

    def test_failure_condition_does_not_parse(self) -> None:
        message = error_of(k8s_resource=CM, failure_condition="status.phase in Failed")
        assert message.startswith("failure_condition: cannot parse condition")

    def test_cel_does_not_compile(self) -> None:
        message = error_of(k8s_resource=CM, success_condition="cel: object.status.x ==")
        assert message.startswith("success_condition: CEL expression") and "does not compile" in message

    def test_cel_unknown_variable(self) -> None:
        message = error_of(k8s_resource=CM, failure_condition="cel: self.status.failed > 0")
        assert message.startswith("failure_condition:") and "only 'object' is defined" in message

    def test_bad_attribute_output_path(self) -> None:
        message = error_of(k8s_resource=CM, attribute_outputs={"x": "{.status[}"})
        assert message.startswith("attribute_outputs['x']: cannot parse JSONPath")

    def test_bad_attribute_output_name(self) -> None:
        message = error_of(k8s_resource=CM, attribute_outputs={"9 lives": "{.metadata.name}"})
        assert message.startswith("attribute_outputs: output name '9 lives' is not allowed; allowed:")

    def test_timeout(self) -> None:
        assert error_of(k8s_resource=CM, timeout=0).startswith("timeout: 0 is not allowed; give seconds > 0")

    def test_cleanup_value(self) -> None:
        assert error_of(k8s_resource=CM, cleanup="sometimes") == (
            "cleanup: 'sometimes' is not allowed; allowed: never, on-run-end, on-success"
        )

    def test_cleanup_only_for_created_objects(self) -> None:
        assert error_of(k8s_resource=CM, action="get", cleanup="on-run-end").startswith("cleanup: only used with action")

    def test_delete_has_no_conditions_or_outputs(self) -> None:
        assert error_of(k8s_resource=CM, action="delete", success_condition="a").startswith(
            "success_condition: not allowed with action='delete'"
        )
        assert error_of(k8s_resource=CM, action="delete", attribute_outputs={"a": ".a"}).startswith(
            "attribute_outputs: not allowed with action='delete'"
        )

    def test_namespace_conflict(self) -> None:
        message = error_of(k8s_resource={**CM, "metadata": {"name": "cm", "namespace": "a"}}, namespace="b")
        assert message.startswith("namespace: 'b' does not match k8s_resource.metadata.namespace 'a'")

    def test_bad_namespace(self) -> None:
        assert error_of(k8s_resource=CM, namespace="Bad_NS").startswith("namespace: 'Bad_NS' is not a valid DNS-1123 label")

    def test_generate_name_only_for_create(self) -> None:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "cm-"}}
        assert error_of(k8s_resource=body, action="apply").startswith(
            "k8s_resource.metadata.generateName: only used with action='create'"
        )

    def test_resource_required_for_create(self) -> None:
        assert error_of(action="create", api_version="v1", kind="ConfigMap", resource_name="x").startswith(
            "k8s_resource: required for action='create'"
        )

    def test_json_patch_needs_kind(self) -> None:
        message = error_of(
            k8s_resource=[{"op": "add", "path": "/data/b", "value": "2"}],
            action="patch",
            merge_strategy="json",
            resource_name="cm",
        )
        assert message.startswith("api_version, kind: required with merge_strategy='json'")

    def test_json_patch_needs_a_list(self) -> None:
        message = error_of(k8s_resource=CM, action="patch", merge_strategy="json")
        assert message.startswith("k8s_resource: with merge_strategy='json' give the list of JSON-patch operations")

    def test_list_without_json_patch(self) -> None:
        assert error_of(k8s_resource=[{"op": "add"}]).startswith("k8s_resource: a list is only allowed as JSON-patch")

    def test_json_patch_ops(self) -> None:
        with pytest.raises(ResourceSpecError, match=r"k8s_resource\[0\]\.op: 'upsert' is not allowed; allowed: add"):
            validate_json_patch([{"op": "upsert", "path": "/a"}])
        with pytest.raises(ResourceSpecError, match=r"k8s_resource\[0\]\.path: 'a' is not a JSON pointer"):
            validate_json_patch([{"op": "remove", "path": "a"}])
        with pytest.raises(ResourceSpecError, match=r"k8s_resource\[1\]\.value: required for 'add'"):
            validate_json_patch([{"op": "remove", "path": "/a"}, {"op": "add", "path": "/b"}])
        with pytest.raises(ResourceSpecError, match=r"k8s_resource\[0\]\.from: required for 'move'"):
            validate_json_patch([{"op": "move", "path": "/a"}])

    def test_force_only_for_apply(self) -> None:
        assert error_of(k8s_resource=CM, force=True).startswith("force: only used with action='apply'")

    def test_owner(self) -> None:
        with pytest.raises(ResourceSpecError, match=r"set_owner_reference\.kind: None is not a kind"):
            normalize_owner({"apiVersion": "v1", "name": "x"})
        with pytest.raises(ResourceSpecError, match="set_owner_reference: give the owner as a mapping"):
            normalize_owner("ConfigMap/x")
        owner = normalize_owner(client.V1ConfigMap(api_version="v1", kind="ConfigMap", metadata=client.V1ObjectMeta(name="p")))
        assert owner == {"apiVersion": "v1", "kind": "ConfigMap", "name": "p"}

    def test_bad_api_version(self) -> None:
        assert error_of(k8s_resource={**CM, "apiVersion": "Batch/V1"}).startswith(
            "k8s_resource.apiVersion: 'Batch/V1' is not an apiVersion; allowed:"
        )

    def test_propagation_policy(self) -> None:
        assert error_of(k8s_resource=CM, action="delete", propagation_policy="Later").startswith(
            "propagation_policy: 'Later' is not allowed; allowed: Background, Foreground, Orphan"
        )


# --------------------------------------------------------------------------- #
# Good input
# --------------------------------------------------------------------------- #


class TestSpec:
    def test_create_defaults_and_round_trip(self) -> None:
        spec = build_resource_spec(
            CM_YAML, options=StepOptions(success_condition="data.a==1"), attribute_outputs={"a": "{.data.a}"}
        )
        assert (spec.action, spec.api_version, spec.kind, spec.name) == ("create", "v1", "ConfigMap", "cm")
        assert spec.output_names == ("name", "manifest", "a")
        data = json.loads(json.dumps(spec.to_dict()))
        assert ResourceSpec.from_dict(data) == spec

    def test_patch_defaults_to_strategic(self) -> None:
        assert build_resource_spec(CM, action="patch").merge_strategy == "strategic"

    def test_json_patch_with_explicit_target(self) -> None:
        spec = build_resource_spec(
            [{"op": "replace", "path": "/data/a", "value": "2"}],
            action="patch",
            merge_strategy="json",
            api_version="v1",
            kind="ConfigMap",
            resource_name="cm",
        )
        assert (spec.kind, spec.name, spec.merge_strategy) == ("ConfigMap", "cm", "json")

    def test_get_and_delete_without_manifest(self) -> None:
        spec = build_resource_spec(action="get", api_version="v1", kind="ConfigMap", resource_name="cm")
        assert spec.body is None and spec.name == "cm"
        delete = build_resource_spec(action="delete", api_version="v1", kind="ConfigMap", name_from_input=True)
        assert delete.name is None and delete.output_names == ("name",)

    def test_generate_name(self) -> None:
        spec = build_resource_spec({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"generateName": "job-"}})
        assert spec.name is None and spec.generate_name == "job-"

    def test_explicit_values_matching_manifest(self) -> None:
        spec = build_resource_spec(
            CM, api_version="v1", kind="ConfigMap", resource_name="cm", options=StepOptions(namespace="ns")
        )
        assert spec.namespace == "ns"

    def test_reserved_outputs_can_be_overridden(self) -> None:
        spec = build_resource_spec(CM, attribute_outputs={"name": "{.metadata.uid}", "x": ".data.a"})
        assert spec.output_names == ("name", "manifest", "x")

    def test_unknown_spec_keys(self) -> None:
        with pytest.raises(ResourceSpecError, match="spec: unknown keys"):
            ResourceSpec.from_dict({"action": "get", "bogus": 1})

    def test_from_dict_reads_null_containers_as_empty(self) -> None:
        spec = ResourceSpec.from_dict({"action": "get", "fail_on_events": None, "attribute_outputs": None})
        assert spec.fail_on_events == () and spec.attribute_outputs == {}


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #


def test_forbidden_message_names_verb_resource_namespace_and_user() -> None:
    exc = ApiException(status=403, reason="Forbidden")
    exc.body = json.dumps(
        {
            "message": 'persistentvolumeclaims is forbidden: User "system:serviceaccount:ml:runner" cannot create '
            'resource "persistentvolumeclaims" in API group "" in the namespace "ml"'
        }
    )
    error = translate_api_error(exc, "create", "persistentvolumeclaims", "ml", "PersistentVolumeClaim ml/x")
    assert isinstance(error, Forbidden)
    assert str(error).startswith(
        "forbidden: needs create on persistentvolumeclaims in namespace ml for system:serviceaccount:ml:runner"
    )


def test_describe_status() -> None:
    assert describe_status({"status": {"phase": "Pending"}}) == 'status: {"phase": "Pending"}'
    assert describe_status({"metadata": {}, "data": {"a": "1"}}).startswith("object has no status; last-seen content")


# --------------------------------------------------------------------------- #
# Clean-up decisions
# --------------------------------------------------------------------------- #

UPSTREAM = {"vol": [], "write": ["vol"], "read": ["write"], "side": []}


class TestRunEnd:
    def test_not_over_while_steps_remain(self) -> None:
        statuses = {"vol": "completed", "write": "running", "read": None, "side": "completed"}
        assert not run_is_over("vol", False, statuses, UPSTREAM, "continue_on_failure")

    def test_over_after_last_step(self) -> None:
        statuses = {"vol": "completed", "write": "completed", "read": "running", "side": "cached"}
        assert run_is_over("read", False, statuses, UPSTREAM, "continue_on_failure")
        assert run_succeeded("read", False, statuses)

    def test_failure_stops_the_run_in_fail_fast(self) -> None:
        statuses = {"vol": "completed", "write": "failed", "read": None, "side": None}
        assert run_is_over("write", True, statuses, UPSTREAM, "fail_fast")
        assert not run_succeeded("write", True, statuses)

    def test_continue_on_failure_waits_for_independent_steps(self) -> None:
        statuses = {"vol": "completed", "write": "failed", "read": None, "side": None}
        assert not run_is_over("write", True, statuses, UPSTREAM, "continue_on_failure")
        statuses["side"] = "running"
        assert run_is_over("side", False, statuses, UPSTREAM, "continue_on_failure")

    def test_entries(self) -> None:
        entries = [{"cleanup": "on-run-end", "n": 1}, {"cleanup": "on-success", "n": 2}, {"cleanup": "never", "n": 3}]
        assert [e["n"] for e in entries_to_delete(entries, True)] == [1, 2]
        assert [e["n"] for e in entries_to_delete(entries, False)] == [1]


# --------------------------------------------------------------------------- #
# ZenML steps built by the factories (definition time only)
# --------------------------------------------------------------------------- #


class TestFactories:
    def test_outputs_follow_attribute_outputs(self) -> None:
        from k8s_step_operator.steps import resource_step

        step = resource_step(CM, attribute_outputs={"a": "{.data.a}", "uid": "{.metadata.uid}"})
        assert list(step.entrypoint_definition.outputs) == ["name", "manifest", "a", "uid"]
        assert step.name == "create_configmap"
        assert step.configuration.parameters["spec"]["kind"] == "ConfigMap"
        assert step.configuration.enable_cache is False

    def test_entrypoint_is_rebuilt_from_its_import_path(self) -> None:
        from zenml.steps import BaseStep

        from k8s_step_operator.steps import entrypoints, resource_step

        step = resource_step(CM, attribute_outputs={"x-y": ".data.a"})
        source = step.resolve()
        entrypoints.__dict__.pop(source.attribute)
        loaded = BaseStep.load_from_source(source)
        assert list(loaded.entrypoint_definition.outputs) == ["name", "manifest", "x-y"]

    def test_volume_and_snapshot_outputs(self) -> None:
        from k8s_step_operator.steps import delete_step, snapshot_step, volume_step

        assert list(volume_step("v", "1Gi").entrypoint_definition.outputs) == ["name", "manifest", "size"]
        assert list(snapshot_step("s", pvc="p").entrypoint_definition.outputs) == ["name", "manifest", "size"]
        assert list(delete_step(api_version="v1", kind="Pod").entrypoint_definition.outputs) == ["name"]

    def test_call_checks_run_before_anything_else(self) -> None:
        from k8s_step_operator.steps import delete_step, snapshot_step

        with pytest.raises(ResourceSpecError, match="resource_name: the step has no object name"):
            delete_step(api_version="v1", kind="Pod")()
        with pytest.raises(ResourceSpecError, match="pvc, volume: give exactly one of them, not both"):
            snapshot_step("s")(pvc="a", volume="b")
        with pytest.raises(ResourceSpecError, match="pvc, volume: the snapshot step has no source"):
            snapshot_step("s")()

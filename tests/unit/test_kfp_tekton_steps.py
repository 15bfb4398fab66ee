"""CEL steps, custom-task steps, values bound at call time, lists of objects and Tekton's skipping rule (no cluster).

Every bad input is refused with an error that starts with the argument it is about.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from k8s_step_operator.steps.bindings import (
    bind_resource_inputs,
    check_input_names,
    placeholders,
    refuse_unknown,
    substitute,
)
from k8s_step_operator.steps.cel_values import build_cel_spec, check_cel_call, run_cel
from k8s_step_operator.steps.conditions import Verdict, evaluate
from k8s_step_operator.steps.custom_task_spec import (
    REQUIRED,
    SucceededCondition,
    bind_params,
    build_custom_task_spec,
    custom_run_manifest,
    missing_results,
    results_of,
    succeeded_of,
)
from k8s_step_operator.steps.flow import Skipped, condition_value, run_when, skipped_steps
from k8s_step_operator.steps.resource_list import build_resource_list_spec
from k8s_step_operator.steps.resource_spec import ResourceSpecError, build_resource_spec
from k8s_step_operator.steps.volume_spec import (
    bind_snapshot_inputs,
    bind_volume_inputs,
    build_snapshot_spec,
    build_volume_spec,
)

API = "math.example.com/v1alpha1"


def error_of(call: Any) -> str:
    with pytest.raises(ResourceSpecError) as caught:
        call()
    return str(caught.value)


# --------------------------------------------------------------------------- CEL steps
class TestCelStep:
    def test_variables_are_the_inputs_in_order(self) -> None:
        spec = build_cel_spec("flip == 'heads' && [1, 2].exists(x, x > n) && flip != ''")
        assert spec.variables == ("flip", "n")

    def test_evaluates_over_bound_values(self) -> None:
        spec = build_cel_spec("num > threshold")
        assert run_cel(spec.to_dict(), {"num": 7, "threshold": 5}).values(("outcome",)) is True
        assert run_cel(spec, {"num": 3, "threshold": 5})["outcome"] is False
        assert run_cel(build_cel_spec("size(words) * 2"), {"words": ["a", "b"]})["outcome"] == 4

    @pytest.mark.parametrize(
        "expression, message",
        [
            ("flip ==", "expression: CEL expression 'flip ==' does not compile"),
            ("  ", "expression: the CEL expression is empty"),
            (42, "expression: expected a CEL expression (a string), got int"),
            ("spec == 1", "expression: 'spec' cannot be a step input"),
        ],
    )
    def test_definition_errors_name_expression(self, expression: Any, message: str) -> None:
        assert error_of(lambda: build_cel_spec(expression)).startswith(message)

    def test_runtime_error_names_expression(self) -> None:
        message = error_of(lambda: run_cel(build_cel_spec("num > 5"), {"num": "seven"}))
        assert message.startswith("expression: CEL expression 'num > 5' failed to evaluate")

    def test_call_checks(self) -> None:
        spec = build_cel_spec("num > threshold")
        message = error_of(lambda: check_cel_call(spec, "above", {"num": 1}))
        assert message.startswith("threshold: step 'above' evaluates 'num > threshold', which reads 'threshold'")

    def test_step_refuses_what_it_does_not_take(self) -> None:
        from k8s_step_operator.steps import cel_step

        step = cel_step("flip == 'heads'", name="is_heads")
        assert list(step.entrypoint_definition.outputs) == ["outcome"]
        assert list(step.entrypoint_definition.inputs) == ["spec", "flip"]
        assert error_of(lambda: step(coin="x")) == "coin: step 'is_heads' takes no input 'coin'; its inputs: flip"
        assert error_of(lambda: step()).startswith("flip: step 'is_heads' evaluates")
        assert error_of(lambda: step("heads")).startswith("step 'is_heads' takes its inputs by name (flip)")

    def test_step_function_is_rebuilt_from_its_import_path(self) -> None:
        from zenml.steps import BaseStep

        from k8s_step_operator.steps import cel_step, entrypoints

        source = cel_step("a + b > 2").resolve()
        entrypoints.__dict__.pop(source.attribute)
        loaded = BaseStep.load_from_source(source)
        assert list(loaded.entrypoint_definition.inputs) == ["spec", "a", "b"]


# --------------------------------------------------------------------------- custom tasks
def task(**overrides: Any) -> Any:
    options: dict[str, Any] = {"task_spec": {"operation": "add"}, "params": {"a": REQUIRED, "b": 2}, "results": ["sum"]}
    options.update(overrides)
    return build_custom_task_spec(API, "Sum", "add_numbers", **options)


class TestCustomTaskSpec:
    def test_custom_run_with_inline_spec(self) -> None:
        spec = task()
        body = spec.resource["body"]
        assert (body["apiVersion"], body["kind"]) == ("tekton.dev/v1beta1", "CustomRun")
        assert body["metadata"] == {"generateName": "add-numbers-"}
        assert body["spec"]["customSpec"] == {"apiVersion": API, "kind": "Sum", "spec": {"operation": "add"}}
        assert spec.params == {"a": REQUIRED, "b": "2"} and spec.output_names == ("name", "manifest", "sum")
        assert spec.resource["cleanup"] == "on-run-end"  # CUSTOM_TASK_OPTIONS, custom_task_step's default

    def test_task_ref(self) -> None:
        body = custom_run_manifest(API, "Sum", "x", {"a": "1"}, None, {"name": "multiply"})
        assert body["spec"] == {"params": [{"name": "a", "value": "1"}],
                                "customRef": {"apiVersion": API, "kind": "Sum", "name": "multiply"}}
        assert task(task_spec=None, task_ref="multiply").task_ref == {"name": "multiply"}

    def test_params_bound_over_defaults(self) -> None:
        spec = task(params={"a": REQUIRED, "flag": True, "items": [1, "x"], "cfg": {"k": 3}})
        assert bind_params(spec, {"a": 5}) == {"a": "5", "flag": "true", "items": ["1", "x"], "cfg": {"k": "3"}}
        assert error_of(lambda: bind_params(spec, {})) == (
            "a: the custom task's param 'a' is required; bind it when calling the step"
        )

    @pytest.mark.parametrize(
        "args, overrides, message",
        [
            (("batch/v1!", "Sum", "n"), {}, "api_version: 'batch/v1!' is not an apiVersion"),
            ((API, "sum task", "n"), {}, "kind: 'sum task' is not a kind"),
            ((API, "Sum", "--"), {}, "name: '--' is not allowed"),
            ((API, "Sum", "n"), {"task_ref": "x"}, "task_spec, task_ref: give exactly one"),
            ((API, "Sum", "n"), {"task_spec": None}, "task_spec, task_ref: give exactly one"),
            ((API, "Sum", "n"), {"task_spec": "add"}, "task_spec: expected a mapping"),
            ((API, "Sum", "n"), {"task_spec": None, "task_ref": {"nom": "x"}}, "task_ref.name: expected a non-empty"),
            ((API, "Sum", "n"), {"task_spec": None, "task_ref": {"name": "x", "kind": "Other"}},
             "task_ref.kind: 'Other' does not match"),
            ((API, "Sum", "n"), {"params": ["a"]}, "params: expected a mapping"),
            ((API, "Sum", "n"), {"params": {"a": object()}}, "params.a: object is not a param value"),
            ((API, "Sum", "n"), {"params": {"after": 1}}, "params: 'after' cannot be a step input"),
            ((API, "Sum", "n"), {"params": {"a-b": 1}}, "params: 'a-b' cannot be a step input"),
            ((API, "Sum", "n"), {"results": "sum"}, "results: expected a list of result names"),
            ((API, "Sum", "n"), {"results": ["name"]}, "results: 'name' is taken by the step's own output"),
        ],
    )
    def test_bad_input_names_the_argument(self, args: tuple, overrides: dict, message: str) -> None:
        options: dict[str, Any] = {"task_spec": {"operation": "add"}, **overrides}
        assert error_of(lambda: build_custom_task_spec(*args, **options)).startswith(message)

    @pytest.mark.parametrize(
        "arguments, message",
        [
            ({"timeout": -1}, "timeout: -1 is not allowed"),
            ({"success_condition": "object.status =="}, "success_condition: CEL expression"),
            ({"cleanup": "later"}, "cleanup: 'later' is not allowed; allowed: never, on-run-end, on-success"),
            ({"namespace": "Bad_NS"}, "namespace: 'Bad_NS' is not a valid DNS-1123 label"),
            ({"kubeconfig": ""}, "kubeconfig: expected a non-empty string"),
        ],
    )
    def test_bad_shared_options_name_the_argument(self, arguments: dict, message: str) -> None:
        from k8s_step_operator.steps import custom_task_step

        assert error_of(lambda: custom_task_step(API, "Sum", "n", task_spec={}, **arguments)).startswith(message)

    def test_step_inputs_and_outputs(self) -> None:
        from k8s_step_operator.steps import custom_task_step

        step = custom_task_step(API, "Sum", "add", task_spec={}, params={"a": REQUIRED, "b": 1}, results=["sum"])
        assert step.name == "sum_add"
        assert list(step.entrypoint_definition.inputs) == ["spec", "a", "b"]
        assert list(step.entrypoint_definition.outputs) == ["name", "manifest", "sum"]
        assert error_of(lambda: step(b=1)).startswith("a: the custom task's param 'a' is required")
        assert error_of(lambda: step(a=1, c=2)) == "c: step 'sum_add' takes no input 'c'; its inputs: a, b"


class TestSucceededCondition:
    @staticmethod
    def run(status: str | None, reason: str = "", message: str = "", results: Any = None) -> dict[str, Any]:
        conditions = [] if status is None else [{"type": "Succeeded", "status": status, "reason": reason,
                                                 "message": message}]
        return {"status": {"conditions": [{"type": "Other", "status": "True"}, *conditions],
                           "results": results or []}}

    def test_judgement(self) -> None:
        success, failure = SucceededCondition("True"), SucceededCondition("False")
        assert evaluate(self.run(None), success, failure) == (Verdict.PENDING, "no Succeeded condition yet")
        assert evaluate(self.run("Unknown", "Running", "half way"), success, failure) == (
            Verdict.PENDING, "Succeeded=Unknown (Running): half way")
        assert evaluate(self.run("True", "Succeeded"), success, failure)[0] is Verdict.SUCCEEDED
        assert evaluate(self.run("False", "Boom", "it broke"), success, failure) == (
            Verdict.FAILED, "Succeeded=False (Boom): it broke")
        assert succeeded_of({}) == ("", "", "")

    def test_results(self) -> None:
        obj = self.run("True", results=[{"name": "sum", "value": "5"}, {"name": "list", "value": ["a"]}, {"x": 1}])
        assert results_of(obj) == {"sum": "5", "list": ["a"]}
        assert missing_results(obj, ["sum", "carry"]) == ["carry"]


# --------------------------------------------------------------------------- values bound at call time
CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "{{inputs.which}}"},
      "data": {"n": "{{ inputs.n }}", "note": "n is {{inputs.n}}, cfg {{inputs.cfg}}"}}


class TestBindings:
    def test_placeholders_and_substitution(self) -> None:
        assert placeholders(CM) == ("which", "n", "cfg")
        out = substitute(CM, {"which": "cm", "n": 3, "cfg": {"a": 1}})
        assert out["data"] == {"n": 3, "note": 'n is 3, cfg {"a": 1}'} and out["metadata"]["name"] == "cm"
        assert error_of(lambda: substitute(CM, {"which": "cm"})).startswith(
            "n: k8s_resource uses {{inputs.n}} but the step was called without it")

    def test_bind_resource_inputs_rereads_name(self) -> None:
        spec = build_resource_spec(CM)
        bound = bind_resource_inputs(spec, {"which": "real", "n": "1", "cfg": "x"})
        assert bound.name == "real" and bound.body["data"]["n"] == "1"
        assert error_of(lambda: bind_resource_inputs(spec, {"which": "Bad/Name", "n": 1, "cfg": 1})).startswith(
            "k8s_resource.metadata.name: 'Bad/Name' is not a valid object name")

    def test_names(self) -> None:
        assert check_input_names(["a", "b", "a"], "params") == ("a", "b")
        assert error_of(lambda: refuse_unknown("s", {"x": 1}, ())) == "x: step 's' takes no input 'x'; its inputs: none"

    def test_resource_step_inputs(self) -> None:
        from k8s_step_operator.steps import resource_step

        step = resource_step(CM, name="record")
        assert list(step.entrypoint_definition.inputs) == ["spec", "resource_name", "which", "n", "cfg"]
        assert error_of(lambda: step(which="a", n=1)).startswith(
            "cfg: k8s_resource uses {{inputs.cfg}}; bind it when calling the step (which=..., n=..., cfg=...)")
        assert error_of(lambda: step(size="1Gi")).startswith(
            "size: step 'record' takes no input 'size'; its inputs: resource_name, which, n, cfg")
        bad_kind = {"apiVersion": "v1", "kind": "{{inputs.kind}}", "metadata": {"name": "x"}}
        assert error_of(lambda: resource_step(bad_kind)).startswith("k8s_resource.kind: cannot be bound")

    def test_volume_arguments_are_inputs(self) -> None:
        from k8s_step_operator.steps import snapshot_step, volume_step

        step = volume_step(name="data")
        assert list(step.entrypoint_definition.inputs) == [
            "spec", "resource_name", "size", "storage_class", "annotations", "data_source"]
        assert error_of(lambda: step(resource_name="d")).startswith("size: required")
        assert error_of(lambda: step(size="1Gi")).startswith("resource_name: required")
        assert error_of(lambda: step(resource_name="d", size="1Gi", pvc="p")) == (
            "pvc: step 'data' takes no input 'pvc'; its inputs: resource_name, size, storage_class, annotations, "
            "data_source")
        assert error_of(lambda: volume_step("d", "1Gi", name="v")(size="2Gi")).startswith(
            "size: given both when the step was defined ('1Gi') and as a step input")
        manifest = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "m"}, "spec": {}}
        assert error_of(lambda: volume_step(k8s_resource=manifest, name="m")(storage_class="x")).startswith(
            "storage_class: not allowed with k8s_resource")
        snap = snapshot_step(name="s")
        assert list(snap.entrypoint_definition.inputs) == [
            "spec", "resource_name", "pvc", "volume", "snapshot_class", "annotations"]
        assert error_of(lambda: snap(pvc="p", size="1Gi")).startswith("size: step 's' takes no input 'size'")
        assert error_of(lambda: snapshot_step("s", snapshot_class="a", name="s")(pvc="p", snapshot_class="b")
                        ).startswith("snapshot_class: given both")

    def test_bound_volume_values_are_validated(self) -> None:
        spec = build_volume_spec(late_inputs=True)
        bound = bind_volume_inputs(spec, {"resource_name": "d", "size": "1.5Gi", "storage_class": "fast",
                                          "annotations": {"team": "ml"}})
        assert (bound.resource_name, bound.size, bound.storage_class, bound.annotations) == (
            "d", "1.5Gi", "fast", {"team": "ml"})
        for inputs, message in (
            ({"resource_name": "d", "size": "lots"}, "size: 'lots'"),
            ({"resource_name": "d", "size": "0"}, "size: '0' is not allowed"),
            ({"resource_name": "d", "storage_class": "a/b"}, "storage_class: 'a/b' is not a valid object name"),
            ({"resource_name": "d", "annotations": {"bad key!": "v"}}, "annotations"),
            ({}, "resource_name: required"),
        ):
            assert error_of(functools.partial(bind_volume_inputs, spec, inputs)).startswith(message)
        snap = bind_snapshot_inputs(build_snapshot_spec(late_inputs=True), {"resource_name": "s",
                                                                             "snapshot_class": "local"})
        assert (snap.resource_name, snap.snapshot_class) == ("s", "local")
        assert error_of(lambda: bind_snapshot_inputs(build_snapshot_spec("s", snapshot_class="a", late_inputs=True),
                                                     {"snapshot_class": "b"})).startswith("snapshot_class: given both")


# --------------------------------------------------------------------------- lists of objects
class TestLists:
    DOCS = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: b}\n"

    def test_each_object_in_order(self) -> None:
        from k8s_step_operator.steps import resource_step

        step = resource_step(self.DOCS, attribute_outputs={"uid": "{.metadata.uid}"})
        assert step.name == "create_configmap_list"
        assert list(step.entrypoint_definition.outputs) == ["name", "manifest", "uid"]
        kinds = [item["kind"] for item in step.configuration.parameters["spec"]["items"]]
        assert kinds == ["ConfigMap", "Secret"]

    def test_errors_name_the_object(self) -> None:
        docs = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},
                {"apiVersion": "v1", "metadata": {"name": "b"}, "kind": "Config Map"}]
        assert error_of(lambda: build_resource_list_spec(docs)).startswith(
            "k8s_resource[1]: k8s_resource.kind: 'Config Map' is not a kind")
        assert error_of(lambda: build_resource_list_spec(docs[:1], resource_name="x")).startswith(
            "resource_name: not allowed with several objects")
        assert error_of(lambda: build_resource_spec(docs)).startswith(
            "k8s_resource: a list is only allowed as JSON-patch operations")


# --------------------------------------------------------------------------- Tekton's skipping rule
class Loaded:
    def __init__(self, value: Any) -> None:
        self.value = value

    def load(self) -> Any:
        return self.value


class TestRunWhen:
    def test_condition_and_dependencies(self) -> None:
        calls: list[tuple] = []

        def step(*args: Any, **kwargs: Any) -> str:
            calls.append((args, kwargs))
            return "ran"

        assert run_when(step, 1, when=Loaded(True), id="a") == "ran"
        skipped = run_when(step, 2, when=Loaded(False), id="b")
        assert skipped == Skipped("b", "its condition is false") and not skipped and skipped[0] is skipped
        assert run_when(step, skipped, id="c") == Skipped("c", "it depends on b, which was skipped")
        assert run_when(step, after=["ok", skipped], id="d") == Skipped("d", "it depends on b, which was skipped")
        assert run_when(step, x=(1, skipped), id="e").reason == "it depends on b, which was skipped"
        assert run_when(step, when=skipped, id="f").reason == "it depends on b, which was skipped"
        assert calls == [((1,), {"id": "a"})]
        assert skipped_steps({"b": skipped, "a": "ran"}) == {"b": "its condition is false"}

    def test_condition_must_be_a_bool(self) -> None:
        with pytest.raises(TypeError, match="when: expected a bool or a step output holding one"):
            condition_value(Loaded("true"))

"""The preflight's pure parts: the cross-field pod rules known without a cluster, the mapping of the API
server's refusal back to the setting a user wrote, and the one error a run fails with."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from k8s_step_operator import preflight
from k8s_step_operator.settings import K8sPodSettings, K8sStepOperatorSettings, StepSettings


@pytest.mark.parametrize(
    ("pod_settings", "expected"),
    [
        ({"volume_mounts": [{"name": "data", "mountPath": "/data"}]},
         "pod_settings.volume_mounts[0].name: no volume named 'data' (volumes: none)"),
        ({"volumes": [{"name": "cache", "emptyDir": {}}], "volume_mounts": [{"name": "cahce", "mountPath": "/c"}]},
         "pod_settings.volume_mounts[0].name: no volume named 'cahce' (volumes: cache)"),
        ({"resources": {"limits": {"nvidia.com/gpu": "0.5"}}},
         "pod_settings.resources.limits['nvidia.com/gpu']: '0.5' is fractional; extended resources such as GPUs "
         "come in whole units"),
        ({"resources": {"requests": {"nvidia.com/gpu": 1}}},
         "pod_settings.resources.requests['nvidia.com/gpu']: a request for nvidia.com/gpu needs a limit "
         "(set pod_settings.resources.limits['nvidia.com/gpu'] to '1')"),
        ({"resources": {"requests": {"amd.com/gpu": 1}, "limits": {"amd.com/gpu": 2}}},
         "pod_settings.resources.requests['amd.com/gpu']: '1' must equal its limit '2' (amd.com/gpu is not "
         "overcommitted)"),
        ({"env": [{"name": "LR", "value": "0.1", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "lr"}}}]},
         "pod_settings.env[0]: 'LR' sets both value and valueFrom; set one of them"),
        ({"init_containers": [{"name": "fetch", "image": "i", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}]},
         "pod_settings.init_containers[0].volumeMounts[0].name: no volume named 'x' (volumes: none)"),
    ],
)
def test_cross_field_rules_fail_when_the_settings_are_built(pod_settings: dict, expected: str) -> None:
    with pytest.raises(ValidationError) as error:
        K8sStepOperatorSettings(pod_settings=pod_settings)
    assert expected in str(error.value)
    with pytest.raises(ValidationError, match="no volume|fractional|needs a limit|must equal|both value"):
        K8sPodSettings(**pod_settings)


@pytest.mark.parametrize(
    "pod_settings",
    [
        {"shm_size": "1Gi", "volume_mounts": [{"name": "k8s-step-operator-shm", "mountPath": "/s"}]},
        {"additional_pod_spec_args": {"volumes": [{"name": "d", "emptyDir": {}}]},
         "volume_mounts": [{"name": "d", "mountPath": "/d"}]},
        {"pod_template_file": "pod.yaml", "volume_mounts": [{"name": "from-template", "mountPath": "/t"}]},
        {"resources": {"requests": {"nvidia.com/gpu": 2, "cpu": "0.5"}, "limits": {"nvidia.com/gpu": "2"}}},
        {"resources": {"limits": {"nvidia.com/gpu": 1}}},  # the request defaults to the limit
        {"resources": {"requests": {"hugepages-2Mi": "1Mi", "example.kubernetes.io/thing": "0.5"}}},
        {"env": [{"name": "A", "value": ""}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
    ],
)
def test_what_the_api_server_accepts_is_accepted(pod_settings: dict) -> None:
    K8sStepOperatorSettings(pod_settings=pod_settings)


def test_zenmls_compiler_defers_the_rules_to_the_preflight_which_names_the_step() -> None:
    bad = {"volume_mounts": [{"name": "data", "mountPath": "/data"}]}
    settings = StepSettings(pod_settings=bad)  # what ZenML resolves step settings into: no error yet
    assert settings.pod_settings.pod_rule_problems() == [
        "pod_settings.volume_mounts[0].name: no volume named 'data' (volumes: none)"
    ]
    from k8s_step_operator.submission import local_problems

    [finding] = local_problems("third", settings, command_step=False)
    assert finding.line() == "step `third`: pod_settings.volume_mounts[0].name: no volume named 'data' (volumes: none)"
    # a user's strict pod settings object is accepted as the deferred kind
    strict = K8sPodSettings(volumes=[{"name": "d", "emptyDir": {}}], volume_mounts=[{"name": "d", "mountPath": "/d"}])
    assert StepSettings(pod_settings=strict).pod_settings.volume_mounts == strict.volume_mounts


POD = {
    "spec": {
        "initContainers": [{"name": "fetch"}, {"name": "proxy", "restartPolicy": "Always"}],
        "containers": [{"name": "main"}],
    }
}


@pytest.mark.parametrize(
    ("api_field", "setting"),
    [
        ("spec.containers[0].volumeMounts[1].name", "pod_settings.volume_mounts[1].name"),
        ("spec.template.spec.containers[0].resources.limits[nvidia.com/gpu]",
         "pod_settings.resources.limits[nvidia.com/gpu]"),
        ("spec.containers[0].env[2].valueFrom", "pod_settings.env[2].valueFrom"),
        ("spec.initContainers[0].image", "pod_settings.init_containers (container 'fetch').image"),
        ("spec.initContainers[1].ports[0]", "pod_settings.sidecar_containers (container 'proxy').ports[0]"),
        ("spec.tolerations[0].operator", "pod_settings.tolerations[0].operator"),
        ("spec.serviceAccountName", "service_account_name"),
        ("metadata.labels", "pod_settings.labels"),
        ("spec.hostNetwork", "the pod's spec.hostNetwork"),
    ],
)
def test_the_api_servers_field_maps_to_the_setting(api_field: str, setting: str) -> None:
    assert preflight.settings_field(POD, api_field) == setting


def test_a_refusal_becomes_findings_that_name_step_and_setting() -> None:
    invalid = {
        "message": 'Pod "x" is invalid: spec.containers[0].volumeMounts[0].name: Not found: "data"',
        "details": {"causes": [{"reason": "FieldValueNotFound", "message": 'Not found: "data"',
                                "field": "spec.containers[0].volumeMounts[0].name"}]},
    }
    [finding] = preflight.refusal("third", "Pod", POD, invalid, 422)
    assert finding.line() == (
        "step `third`: pod_settings.volume_mounts[0].name: Not found: \"data\" "
        "(the API server's check of spec.containers[0].volumeMounts[0].name)"
    )
    namespace = {"message": 'namespaces "ml" not found', "details": {"name": "ml", "kind": "namespaces"}}
    assert preflight.refusal("a", "Pod", POD, namespace, 404)[0].field == "kubernetes_namespace"
    account = {"message": 'pods "x" is forbidden: error looking up service account ml/sa: serviceaccount "sa" not found'}
    assert preflight.refusal("a", "Pod", POD, account, 403)[0].field == "service_account_name"
    quota = {"message": 'pods "x" is forbidden: exceeded quota: gpus, requested: nvidia.com/gpu=2'}
    assert preflight.refusal("a", "Pod", POD, quota, 403)[0].line() == (
        "step `a`: the step's Pod (refused): " + quota["message"]
    )


def test_the_run_fails_with_one_error_naming_every_step() -> None:
    text = preflight.render(
        "k8s", [preflight.Finding("b", "pod_count", "x"), preflight.Finding("c", "service_account_name", "y")], 3
    )
    assert text.splitlines() == [
        "preflight of step operator `k8s`: 2 of 3 step(s) would be refused by the cluster; nothing was run:",
        "  - step `b`: pod_count: x",
        "  - step `c`: service_account_name: y",
        "(turn this check off with the setting `preflight: false`)",
    ]


def _run_preflight(mocker, workspaces_of_step: dict[str, dict]) -> tuple[str, list[str]]:
    """The operator's preflight over steps a, b, c with every dry run passing and every access review
    denied; returns the error and the step each review was made for."""
    from types import SimpleNamespace

    from k8s_step_operator.step_operator import K8sStepOperator
    from k8s_step_operator.submission import User

    def step(name: str) -> SimpleNamespace:
        config = SimpleNamespace(uses_step_operator=lambda _: True, command=None)
        return SimpleNamespace(config=config, name=name)

    snapshot = SimpleNamespace(
        step_configurations={n: step(n) for n in ("a", "b", "c")},
        pipeline_configuration=SimpleNamespace(name="p"),
    )
    settings = {n: StepSettings().model_copy(update={"workspaces": workspaces_of_step.get(n, {})}) for n in "abc"}
    reviews: list[str] = []
    operator = K8sStepOperator.__new__(K8sStepOperator)
    operator._preflight_passed = set()
    operator.name = "k8s"
    mocker.patch.object(K8sStepOperator, "_settings", lambda self, s: settings[s.name])
    mocker.patch.object(K8sStepOperator, "_namespace", lambda self, s: "ml")
    mocker.patch.object(K8sStepOperator, "_dry_run", lambda self, *args: [])
    mocker.patch.object(K8sStepOperator, "_likely_image", lambda self, step, pipeline: "img")
    mocker.patch("k8s_step_operator.step_operator._active_user", return_value=User("u"))

    def review(self, name, settings, namespace):
        reviews.append(name)
        return preflight.denied(name, [(f"forbidden: needs watch on pods in {namespace}", "wait")])

    mocker.patch.object(K8sStepOperator, "_review_access", review)
    with pytest.raises(ValueError) as error:
        operator._preflight(snapshot)
    assert operator._preflight_passed == set()  # no step passes while a permission it needs is denied
    return str(error.value), reviews


def test_a_denied_permission_is_reviewed_and_reported_once_per_run(mocker) -> None:
    text, reviews = _run_preflight(mocker, {})
    assert reviews == ["a"]
    assert [line for line in text.splitlines() if "forbidden" in line] == [
        "  - step `a`: permissions: forbidden: needs watch on pods in ml (wait)"
    ]


def test_a_step_with_a_per_run_claim_has_the_claim_permissions_reviewed_too(mocker) -> None:
    _, reviews = _run_preflight(mocker, {"b": {"ws": {"claim_template": {}}}})
    assert reviews == ["a", "b"]

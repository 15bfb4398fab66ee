"""pvolumes (KFP's PipelineVolume) and workspaces (KFP-Tekton's pipeline conf): settings -> mounts -> pod."""

from __future__ import annotations

import pytest
from kubernetes.client import V1ConfigMapVolumeSource, V1Volume

from k8s_step_operator import manifest, mounts, rbac
from k8s_step_operator.settings import K8sStepOperatorSettings, StepSettings

POD = {"spec": {"containers": [{"name": "main"}], "initContainers": [{"name": "init", "env": [{"name": "A", "value": "own"}]}]}}


def values(**known):
    def value_of(name):
        return known[name]

    return value_of


# ------------------------------------------------------------------ pvolumes
def test_pvolume_string_form_is_an_input_or_a_claim_as_before():
    settings = K8sStepOperatorSettings(pvolumes={"/data": "pvc", "/fixed": "shared-claim"})
    got = mounts.pvolume_mounts(settings.pvolumes, values(pvc="run-claim"))
    assert [(m.path, m.source) for m in got] == [
        ("/data", {"persistentVolumeClaim": {"claimName": "run-claim"}}),
        ("/fixed", {"persistentVolumeClaim": {"claimName": "shared-claim"}}),
    ]


def test_pvolume_structured_form_names_any_volume_with_sub_path_and_read_only():
    settings = K8sStepOperatorSettings(pvolumes={
        "/scratch": {"volume": {"emptyDir": {"sizeLimit": "1Gi"}}},
        "/config": {"volume": V1Volume(name="ignored", config_map=V1ConfigMapVolumeSource(name="cfg")), "read_only": True},
        "/secret": {"volume": {"secret": {"secret_name": "creds"}}, "readOnly": True},
        "/data": {"input": "pvc", "sub_path": "step1/"},
        "/shared": {"claim": "shared-claim", "subPath": "a/b"},
    })
    pod = manifest.mount_volumes(POD, mounts.pvolume_mounts(settings.pvolumes, values(pvc={"metadata": {"name": "vol-1"}})))
    by_path = {m["mountPath"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes[by_path["/scratch"]["name"]]["emptyDir"] == {"sizeLimit": "1Gi"}
    assert volumes[by_path["/config"]["name"]]["configMap"] == {"name": "cfg"} and by_path["/config"]["readOnly"]
    assert volumes[by_path["/secret"]["name"]]["secret"] == {"secretName": "creds"} and by_path["/secret"]["readOnly"]
    assert volumes[by_path["/data"]["name"]]["persistentVolumeClaim"] == {"claimName": "vol-1"}
    assert by_path["/data"]["subPath"] == "step1/" and "readOnly" not in by_path["/data"]
    assert volumes[by_path["/shared"]["name"]]["persistentVolumeClaim"] == {"claimName": "shared-claim"}
    assert "volumeMounts" not in pod["spec"]["initContainers"][0]  # the step's container only


@pytest.mark.parametrize(
    "pvolumes, message",
    [
        ({"data": "pvc"}, r"pvolumes\['data'\]: the mount path must be absolute"),
        ({"/d": {"claim": "a", "volume": {"emptyDir": {}}}}, r"pvolumes\['/d'\]: give only one of input, claim, volume \(got claim and volume\)"),
        ({"/d": {"read_only": True}}, r"pvolumes\['/d'\]: give one of input, claim, volume"),
        ({"/d": {"claim": "a", "subpath": "x"}}, r"pvolumes\['/d'\]\.subpath: unknown field; allowed: input, claim, volume, sub_path, read_only"),
        ({"/d": {"claim": "a", "sub_path": "/abs"}}, r"pvolumes\['/d'\]\.sub_path: must be a relative path"),
        ({"/d": {"claim": "a", "sub_path": "x/../../y"}}, r"pvolumes\['/d'\]\.sub_path: must be a relative path inside the volume, without '\.\.'"),
        ({"/d": {"claim": "Bad_Name"}}, r"pvolumes\['/d'\]\.claim"),
        ({"/d": {"input": "not an input"}}, r"pvolumes\['/d'\]\.input: expected the name of a step input"),
        ({"/d": {"volume": {"emptyDir": {}, "configMap": {"name": "x"}}}}, r"pvolumes\['/d'\]\.volume: give exactly one volume source"),
        ({"/d": {"volume": {"nfs2": {}}}}, r"pvolumes\['/d'\]\.volume"),
        ({"/d": {"claim": "a", "read_only": "yes"}}, r"pvolumes\['/d'\]\.read_only: expected true or false"),
    ],
)
def test_bad_pvolumes_name_the_field(pvolumes, message):
    with pytest.raises(ValueError, match=message):
        K8sStepOperatorSettings(pvolumes=pvolumes)


def test_pvolume_input_the_step_lacks_is_named():
    with pytest.raises(ValueError, match=r"pvolumes\['/d'\]\.input: the step has no input 'pvc'"):
        mounts.pvolume_mounts({"/d": {"input": "pvc"}}, values())


def test_pvolume_input_must_hold_a_claim_name():
    with pytest.raises(ValueError, match=r"pvolumes\['/d'\]\.input: input 'pvc' must hold a PVC name"):
        mounts.pvolume_mounts({"/d": {"input": "pvc"}}, values(pvc=3))


# ---------------------------------------------------------------- workspaces
TEMPLATE = {"access_modes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}


def test_workspaces_mount_into_the_step_with_default_path_prefix_and_read_only():
    settings = K8sStepOperatorSettings(workspaces={
        "new-ws": {"claim": "data-volume", "sub_path": "artifact_data/{run}/{step}"},
        "new-ws-template": {"claim_template": TEMPLATE, "mount_path": "/scratch", "read_only": True},
        "cfg": {"volume": {"configMap": {"name": "settings"}}},
    })
    run_claims = {"new-ws-template": "run-1-new-ws-template-abc"}
    got = {m.path: m for m in mounts.workspace_mounts(settings.workspaces, run_claims, "Run 1", "train_Model")}
    assert got["/workspace/new-ws"].source == {"persistentVolumeClaim": {"claimName": "data-volume"}}
    assert got["/workspace/new-ws"].sub_path == "artifact_data/run-1/train-model"
    assert got["/scratch"].source == {"persistentVolumeClaim": {"claimName": "run-1-new-ws-template-abc"}}
    assert got["/scratch"].read_only and got["/scratch"].volume_mount()["readOnly"] is True
    assert got["/workspace/cfg"].source == {"configMap": {"name": "settings"}}
    assert settings.workspaces["new-ws-template"]["claim_template"]["accessModes"] == ["ReadWriteOnce"]


def test_run_claim_is_named_after_the_run_and_labelled():
    name = mounts.run_claim_name("my_pipeline-2026_11_29-18_00_00", "0b1c-run-id", "new-ws")
    assert name.startswith("my-pipeline-2026-11-29-18-00-00-new-ws-") and len(name) <= 63
    assert name == mounts.run_claim_name("my_pipeline-2026_11_29-18_00_00", "0b1c-run-id", "new-ws")
    assert name != mounts.run_claim_name("my_pipeline-2026_11_29-18_00_00", "other-run", "new-ws")
    entry = K8sStepOperatorSettings(workspaces={"new-ws": {"claim_template": TEMPLATE}}).workspaces["new-ws"]
    claim = mounts.run_claim("new-ws", entry, name, "ml", {"run-id": "x"}, {"a": "b"})
    assert claim["kind"] == "PersistentVolumeClaim" and claim["metadata"]["namespace"] == "ml"
    assert claim["metadata"]["labels"] == {"run-id": "x"}
    assert claim["metadata"]["annotations"]["k8s-step-operator.zenml.io/workspace"] == "new-ws"
    assert claim["spec"]["resources"] == {"requests": {"storage": "1Gi"}}


@pytest.mark.parametrize(
    "workspaces, message",
    [
        ({"ws": {"claim": "a", "claim_template": TEMPLATE}}, r"workspaces\['ws'\]: give only one of claim, volume, claim_template \(got claim and claim_template\)"),
        ({"ws": {"mount_path": "/w"}}, r"workspaces\['ws'\]: give one of claim, volume, claim_template"),
        ({"ws": {"claim": "a", "mount_path": "data"}}, r"workspaces\['ws'\]\.mount_path: the mount path must be absolute"),
        ({"ws": {"claim": "a", "kind": "pvc"}}, r"workspaces\['ws'\]\.kind: unknown field; allowed: claim, volume, claim_template, mount_path, sub_path, read_only"),
        ({"ws": {"claim_template": {"accessModes": ["ReadWriteOnce"]}}}, r"workspaces\['ws'\]\.claim_template\.resources\.requests\.storage: required"),
        ({"ws": {"claim_template": {"acess_modes": []}}}, r"workspaces\['ws'\]\.claim_template"),
        ({"ws": {"claim": "a", "sub_path": "{pipeline}/x"}}, r"workspaces\['ws'\]\.sub_path: unknown placeholder \{pipeline\}; allowed: \{run\}, \{step\}"),
        ({"Bad_WS": {"claim": "a"}}, r"workspaces\['Bad_WS'\]"),
        ({"a": {"claim": "a", "mount_path": "/w"}, "b": {"claim": "b", "mount_path": "/w/"}}, r"workspaces\['b'\]\.mount_path: '/w' is already mounted by workspaces\['a'\]"),
    ],
)
def test_bad_workspaces_name_the_field_and_the_allowed_values(workspaces, message):
    with pytest.raises(ValueError, match=message):
        K8sStepOperatorSettings(workspaces=workspaces)


def test_a_step_overrides_a_pipeline_workspace_field_by_field():
    """ZenML merges pipeline-level settings into a step's key by key (None ignored): a step may make a
    pipeline's workspace read-only without repeating its source; the rule 'one source' waits for the merge."""
    step_level = StepSettings(workspaces={"ws": {"read_only": True}})  # no source at this level: allowed
    assert step_level.merged_problems() == ["workspaces['ws']: give one of claim, volume, claim_template"]
    from zenml.config.pipeline_configurations import PipelineConfiguration
    from zenml.config.step_configurations import StepConfiguration

    pipeline = PipelineConfiguration(name="p", settings={"step_operator": StepSettings(
        workspaces={"ws": {"claim": "data", "sub_path": "x/{step}"}}, pipeline_env={"A": "1"},
        pod_settings={"security_context": {"runAsUser": 1000}, "automount_service_account_token": False},
    )})
    step = StepConfiguration(name="s", settings={"step_operator": StepSettings(
        workspaces={"ws": {"read_only": True}}, pipeline_env={"B": "2"}, pod_settings={"resources": {"limits": {"cpu": "1"}}},
    )})
    merged = step.apply_pipeline_configuration(pipeline, exclude_hook_sources=False).settings["step_operator"]
    merged = StepSettings.model_validate(merged.model_dump())
    assert merged.merged_problems() == []
    assert merged.workspaces == {"ws": {"claim": "data", "sub_path": "x/{step}", "read_only": True}}
    assert merged.pipeline_env == {"A": "1", "B": "2"}
    assert merged.pod_settings.security_context == {"runAsUser": 1000}
    assert merged.pod_settings.automount_service_account_token is False


def test_pipeline_env_reaches_every_container_and_a_container_own_value_wins():
    pod = manifest.with_env(POD, K8sStepOperatorSettings(pipeline_env={"A": "pipe", "B": "pipe"}).pipeline_env)
    assert pod["spec"]["containers"][0]["env"] == [{"name": "A", "value": "pipe"}, {"name": "B", "value": "pipe"}]
    assert pod["spec"]["initContainers"][0]["env"] == [{"name": "B", "value": "pipe"}, {"name": "A", "value": "own"}]


@pytest.mark.parametrize("env, message", [
    ({"1A": "x"}, r"pipeline_env\['1A'\]: not a valid variable name"),
    ({"A": 1}, r"pipeline_env\['A'\]: the value must be a string"),
])
def test_bad_pipeline_env_names_the_field(env, message):
    with pytest.raises(ValueError, match=message):
        K8sStepOperatorSettings(pipeline_env=env)


def test_workspace_and_pvolume_at_one_path_are_refused():
    with pytest.raises(ValueError, match=r"workspaces\['ws'\]\.mount_path: '/data' is already mounted by pvolumes\['/data'\]"):
        K8sStepOperatorSettings(pvolumes={"/data": "pvc"}, workspaces={"ws": {"claim": "a", "mount_path": "/data"}})


def test_rbac_for_workspaces_adds_claim_create_and_delete():
    extra = [p for p in rbac.permissions(workspaces=True) if p not in rbac.permissions()]
    assert {(p.resource, p.verbs) for p in extra} == {("persistentvolumeclaims", ("create",)), ("persistentvolumeclaims", ("delete",))}
    assert [(c.verb, c.resource) for c in rbac.workspace_checks("ml")] == [
        ("create", "persistentvolumeclaims"), ("delete", "persistentvolumeclaims")]
    text = rbac.render_yaml("ml", "runner", rbac.permissions(workspaces=True))
    assert "persistentvolumeclaims" in text


def test_the_run_claim_is_created_once_per_run_and_recorded(mocker):
    """The first step's submission creates and records the run's claim; a later step's 409 is fine; any other
    refusal names the workspace's field."""
    import datetime as dt
    import uuid
    from types import SimpleNamespace

    from zenml.enums import StackComponentType

    from k8s_step_operator import step_operator
    from k8s_step_operator.flavor import K8sStepOperatorConfig

    from ..api_fakes import refusal

    now = dt.datetime.now()
    operator = step_operator.K8sStepOperator(
        name="k8s", id=uuid.uuid4(), config=K8sStepOperatorConfig(kubernetes_namespace="ml"), flavor="k8s",
        type=StackComponentType.STEP_OPERATOR, user=None, created=now, updated=now,
    )
    posted = []

    def request(_api, method, path, query=None, body=None, **_):  # the API server, as the transport sees it
        posted.append((method, path, body))
        if len(posted) == 2:
            raise refusal(409, "AlreadyExists")
        if len(posted) == 3:
            raise refusal(403, "Forbidden")
        return {**body, "metadata": {**body["metadata"], "uid": "u-1"}}

    from k8s_step_operator.kube import rest

    mocker.patch.object(rest, "request", side_effect=request)
    mocker.patch.object(step_operator.K8sStepOperator, "api", new=object())
    record = mocker.patch.object(step_operator, "_record_run_claim")
    mocker.patch.object(step_operator, "_has_cleanup_hook", return_value=True)
    settings = K8sStepOperatorSettings(workspaces={"ws": {"claim_template": TEMPLATE}, "fixed": {"claim": "data"}})
    identity = manifest.StepIdentity("my-run", "pipe", "train", "sr-1", run_id="run-1")
    info = SimpleNamespace(step_run_id="sr-1")
    first = operator._ensure_run_claims(settings, identity, info)
    assert first == {"ws": mounts.run_claim_name("my-run", "run-1", "ws")}
    method, path, body = posted[0]
    assert (method, path) == ("POST", "/api/v1/namespaces/ml/persistentvolumeclaims")
    assert body["metadata"]["labels"]["k8s-step-operator.zenml.io/run-id"] == "run-1"
    record.assert_called_once()
    assert record.call_args.args[2] == f"{path}/{first['ws']}"
    assert operator._ensure_run_claims(settings, identity, info) == first  # 409: an earlier step made it
    assert record.call_count == 1
    with pytest.raises(ValueError, match=r"workspaces\['ws'\]\.claim_template: cannot create the run's claim"):
        operator._ensure_run_claims(settings, identity, info)

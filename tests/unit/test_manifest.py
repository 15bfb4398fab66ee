"""Tests for k8s_step_operator.manifest (pure pod/secret builders)."""

import json
import uuid

import pytest
import yaml

from k8s_step_operator.manifest import (
    ANNOTATION_STEP,
    ANNOTATION_STEP_RUN_ID,
    LABEL_MANAGED_BY,
    LABEL_STEP,
    LABEL_STEP_RUN_ID,
    StepIdentity,
    build_env_secret,
    build_pod,
    env_secret_of,
    read_env_from_secret,
    retarget_env_secret,
    selector_for,
)
from k8s_step_operator.settings import K8sStepOperatorSettings
from k8s_step_operator.settings_files import load_pod_template
from k8s_step_operator.validation import validate_dns1123_label, validate_labels

from .test_settings import seed_004_settings

IMAGE = "registry.example.com/zenml/step:1"
COMMAND = ["python", "-m", "zenml.entrypoints.entrypoint", "--step_name", "trainer"]


def _identity(step: str = "trainer", run_id: str = "") -> StepIdentity:
    return StepIdentity(
        run_name="training_pipeline-2024_01_01-12_00_00_000001",
        pipeline_name="training_pipeline",
        step_name=step,
        step_run_id="0f8fad5b-d9cb-469f-a165-70867728950e",
        run_id=run_id,
    )


def _pod(settings=None, **kwargs):
    args = dict(
        settings=settings or K8sStepOperatorSettings(),
        identity=_identity(),
        image=IMAGE,
        command=COMMAND,
        namespace="zenml",
    )
    args.update(kwargs)
    return build_pod(**args)


def _main(pod):
    (main,) = [c for c in pod["spec"]["containers"] if c["name"] == "main"]
    return main


def test_minimal_pod():
    pod = _pod()
    assert pod["apiVersion"] == "v1" and pod["kind"] == "Pod"
    assert pod["metadata"]["namespace"] == "zenml"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 30
    assert pod["spec"]["containers"] == [
        {
            "name": "main",
            "image": IMAGE,
            "command": COMMAND,
            "resources": {"requests": {"memory": "400Mi"}},  # ZenML's default memory request
        }
    ]
    validate_dns1123_label(pod["metadata"]["name"], "name")


@pytest.mark.parametrize(
    "resources, default, expected",
    [
        ({}, "400Mi", {"requests": {"memory": "400Mi"}}),
        ({"requests": {"cpu": "1"}}, "400Mi", {"requests": {"cpu": "1", "memory": "400Mi"}}),
        ({"requests": {"memory": "1Gi"}}, "400Mi", {"requests": {"memory": "1Gi"}}),
        # a limit alone: the API server defaults the request to it; 400Mi could exceed it
        ({"limits": {"memory": "200Mi"}}, "400Mi", {"limits": {"memory": "200Mi"}}),
        ({"limits": {"cpu": "1"}}, None, {"limits": {"cpu": "1"}}),
    ],
)
def test_default_memory_request(resources, default, expected):
    settings = K8sStepOperatorSettings(pod_settings={"resources": resources}, default_memory_request=default)
    assert _main(_pod(settings)).get("resources", {}) == expected


def test_oidc_ids_win_over_security_contexts():
    from k8s_step_operator.manifest import run_as

    settings = K8sStepOperatorSettings(
        pod_settings={
            "security_context": {"runAsUser": 5, "fsGroup": 7},
            "container_security_context": {"runAsUser": 5, "readOnlyRootFilesystem": True},
            "init_containers": [{"name": "init", "command": ["true"]}],
        }
    )
    pod = run_as(_pod(settings), 1001, 2002)
    assert pod["spec"]["securityContext"] == {"runAsUser": 1001, "runAsGroup": 2002, "fsGroup": 7}
    for container in pod["spec"]["containers"] + pod["spec"]["initContainers"]:
        assert container["securityContext"]["runAsUser"] == 1001
        assert container["securityContext"]["runAsGroup"] == 2002
    assert _main(pod)["securityContext"]["readOnlyRootFilesystem"] is True
    # not positive integers (ZenML ignores them too): unchanged
    for uid, gid in ((None, None), (0, -1), (True, "5")):
        assert run_as(_pod(settings), uid, gid) == _pod(settings)


def test_seed_004_settings_are_applied():
    pod = _pod(seed_004_settings(), namespace="ml-pipelines")
    spec, main = pod["spec"], _main(pod)
    assert spec["nodeSelector"] == {"cloud.google.com/gke-nodepool": "ml-pool", "kubernetes.io/arch": "amd64"}
    assert spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert spec["tolerations"][0] == {"key": "gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}
    assert main["resources"]["requests"] == {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}
    assert [v["name"] for v in spec["volumes"]] == ["data-volume", "config-volume"]
    assert main["volumeMounts"][0] == {"name": "data-volume", "mountPath": "/mnt/data"}
    assert spec["hostIPC"] is True
    assert spec["imagePullSecrets"] == [{"name": "regcred"}, {"name": "gcr-secret"}]
    assert spec["serviceAccountName"] == "zenml-pipeline-runner"
    labels = pod["metadata"]["labels"]
    assert labels["team"] == "data-science" and labels[LABEL_MANAGED_BY] == "k8s-step-operator"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8080"


def test_identity_labels_and_annotations():
    pod = _pod(identity=_identity(run_id="5a1b"))
    labels, annotations = pod["metadata"]["labels"], pod["metadata"]["annotations"]
    assert labels == {
        "app.kubernetes.io/managed-by": "k8s-step-operator",
        "run": "training_pipeline-2024_01_01-12_00_00_000001",
        "pipeline": "training_pipeline",
        "step": "trainer",
        "step-run-id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "run-id": "5a1b",
        # ZenML 0.98's own keys, so selectors written for its operator work
        "run_name": "training_pipeline-2024_01_01-12_00_00_000001",
        "step_name": "trainer",
        "step_run_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "run_id": "5a1b",
    }
    assert annotations["k8s-step-operator.zenml.io/pipeline"] == "training_pipeline"
    assert annotations["k8s-step-operator.zenml.io/run-id"] == "5a1b"


def test_long_names_are_hashed_in_labels_and_kept_in_annotations():
    long_a, long_b = "s" * 99 + "a", "s" * 99 + "b"
    pod_a = _pod(identity=_identity(step=long_a))
    pod_b = _pod(identity=_identity(step=long_b))
    for pod, full in ((pod_a, long_a), (pod_b, long_b)):
        validate_labels(pod["metadata"]["labels"], "labels")
        assert pod["metadata"]["annotations"][ANNOTATION_STEP] == full
        assert len(pod["metadata"]["name"]) <= 63
    assert pod_a["metadata"]["labels"][LABEL_STEP] != pod_b["metadata"]["labels"][LABEL_STEP]
    assert pod_a["metadata"]["name"] != pod_b["metadata"]["name"]


def test_pod_name_uses_job_name_prefix_and_is_unique_per_step_run():
    settings = K8sStepOperatorSettings(job_name_prefix="nightly")
    first = _pod(settings)
    other = StepIdentity("r", "training_pipeline", "trainer", str(uuid.uuid4()))
    second = _pod(settings, identity=other)
    assert first["metadata"]["name"].startswith("nightly-training-pipeline-trainer-")
    assert first["metadata"]["name"] != second["metadata"]["name"]


def test_no_environment_value_appears_in_the_pod():
    environment = {
        "ZENML_STORE_API_KEY": "sk-very-secret-token",
        "ZENML_STORE_URL": "https://zenml.internal.example:8080",
        "AWS_SECRET_ACCESS_KEY": "AKIA/super+secret==",
        "ZENML_STEP_OPERATOR": "True-marker-7f3a",
    }
    settings = seed_004_settings()
    identity = _identity()
    secret = build_env_secret("trainer-env", "ml-pipelines", identity, environment, owner="trainer")
    pod = read_env_from_secret(
        build_pod(settings, identity, IMAGE, COMMAND, "ml-pipelines"), "trainer-env", "trainer", list(environment)
    )
    dumped = json.dumps(pod)
    for value in environment.values():
        assert value not in dumped  # the names are in the spec, the values only in the Secret
    assert secret["stringData"] == {f"trainer.{k}": v for k, v in environment.items()}
    refs = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in _main(pod)["env"] if "valueFrom" in v}
    assert refs == {k: {"name": "trainer-env", "key": f"trainer.{k}"} for k in environment}


def test_the_containers_own_env_wins_over_zenmls_and_env_from_is_kept():
    settings = K8sStepOperatorSettings(
        pod_settings={"env_from": [{"config_map_ref": {"name": "cm"}}], "env": [{"name": "A", "value": "1"}]}
    )
    main = _main(read_env_from_secret(_pod(settings), "trainer-env", "trainer", ["A", "B"]))
    assert main["envFrom"] == [{"configMapRef": {"name": "cm"}}]
    assert main["env"] == [  # ZenML's first (a user's $(B) can refer to it), the step's own A kept
        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "trainer-env", "key": "trainer.B"}}},
        {"name": "A", "value": "1"},
    ]
    assert "env" not in _main(read_env_from_secret(_pod(), "trainer-env", "trainer", []))


def test_the_env_secret_is_found_by_its_keys_and_can_be_pointed_elsewhere():
    settings = K8sStepOperatorSettings(
        pod_settings={"env": [{"name": "DB", "value_from": {"secret_key_ref": {"name": "db", "key": "password"}}}]}
    )
    pod = read_env_from_secret(_pod(settings), "trainer-env", "trainer", ["ZENML_STORE_URL"])
    assert env_secret_of(pod["spec"], "trainer") == "trainer-env"
    assert env_secret_of(_pod(settings)["spec"], "trainer") is None  # the user's own reference is not ours
    spec = retarget_env_secret(pod["spec"], "trainer-env", "first-env")
    refs = [v["valueFrom"]["secretKeyRef"] for v in _main({"spec": spec})["env"]]
    assert refs == [{"name": "first-env", "key": "trainer.ZENML_STORE_URL"}, {"name": "db", "key": "password"}]
    assert env_secret_of(pod["spec"], "trainer") == "trainer-env"  # a new spec, the old one untouched


def test_build_env_secret():
    secret = build_env_secret("trainer-env", "zenml", _identity(), {"A": "1", "B_2": "x"}, owner="trainer")
    assert secret["stringData"] == {"trainer.A": "1", "trainer.B_2": "x"} and secret["immutable"] is True
    assert secret["apiVersion"] == "v1" and secret["kind"] == "Secret"
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["namespace"] == "zenml"
    assert secret["metadata"]["labels"] == {
        k: v for k, v in _pod()["metadata"]["labels"].items()
    }
    assert secret["metadata"]["annotations"][ANNOTATION_STEP_RUN_ID] == _identity().step_run_id
    with pytest.raises(ValueError, match=r"environment\['BAD KEY'\]: not a valid Secret key; allowed"):
        build_env_secret("s", "zenml", _identity(), {"BAD KEY": "x"}, owner="s")


def test_selector_matches_pod_and_secret_labels():
    selector = selector_for(_identity())
    wanted = dict(part.split("=", 1) for part in selector.split(","))
    assert wanted == {
        LABEL_MANAGED_BY: "k8s-step-operator",
        LABEL_STEP_RUN_ID: "0f8fad5b-d9cb-469f-a165-70867728950e",
    }
    for labels in (
        _pod()["metadata"]["labels"],
        build_env_secret("s", "zenml", _identity(), {}, owner="s")["metadata"]["labels"],
    ):
        assert wanted.items() <= labels.items()


def test_privileged_and_container_security_context():
    main = _main(_pod(K8sStepOperatorSettings(privileged=True)))
    assert main["securityContext"] == {"privileged": True}
    assert "securityContext" not in _main(_pod())
    settings = K8sStepOperatorSettings(
        pod_settings={
            "container_security_context": {"run_as_non_root": True, "read_only_root_filesystem": True},
            "init_containers": [{"name": "setup", "securityContext": {"readOnlyRootFilesystem": False}}],
            "sidecar_containers": [{"name": "proxy", "image": "envoy:1"}],
        }
    )
    pod = _pod(settings)
    assert _main(pod)["securityContext"] == {"runAsNonRoot": True, "readOnlyRootFilesystem": True}
    setup, proxy = pod["spec"]["initContainers"]
    assert setup["securityContext"] == {"runAsNonRoot": True, "readOnlyRootFilesystem": False}
    assert proxy["securityContext"] == {"runAsNonRoot": True, "readOnlyRootFilesystem": True}


def test_init_and_sidecar_containers():
    settings = K8sStepOperatorSettings(
        pod_settings={
            "image_pull_policy": "Always",
            "init_containers": [{"name": "setup", "command": ["sh", "-c", "true"]}],
            "sidecar_containers": [{"name": "proxy", "image": "envoy:1"}],
        }
    )
    pod = _pod(settings)
    assert pod["spec"]["initContainers"] == [
        {"name": "setup", "command": ["sh", "-c", "true"], "image": IMAGE, "imagePullPolicy": "Always"},
        {"name": "proxy", "image": "envoy:1", "restartPolicy": "Always"},
    ]
    assert _main(pod)["imagePullPolicy"] == "Always"
    assert [c["name"] for c in pod["spec"]["containers"]] == ["main"]


def test_shm_size_mounts_memory_backed_empty_dir():
    pod = _pod(K8sStepOperatorSettings(pod_settings={"shm_size": "2Gi", "volumes": [{"name": "d", "emptyDir": {}}]}))
    assert pod["spec"]["volumes"][-1] == {
        "name": "k8s-step-operator-shm",
        "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"},
    }
    assert {"name": "k8s-step-operator-shm", "mountPath": "/dev/shm"} in _main(pod)["volumeMounts"]


def test_pod_level_extras():
    settings = K8sStepOperatorSettings(
        active_deadline_seconds=3600,
        delete_grace_period_seconds=5,
        pod_settings={
            "security_context": {"fs_group": 2000},
            "priority_class_name": "high",
            "runtime_class_name": "nvidia",
            "automount_service_account_token": False,
            "scheduler_name": "volcano",
        },
    )
    spec = _pod(settings)["spec"]
    assert spec["securityContext"] == {"fsGroup": 2000}
    assert spec["priorityClassName"] == "high"
    assert spec["runtimeClassName"] == "nvidia"
    assert spec["automountServiceAccountToken"] is False
    assert spec["schedulerName"] == "volcano"
    assert spec["activeDeadlineSeconds"] == 3600
    assert spec["terminationGracePeriodSeconds"] == 5
    assert "hostIPC" not in spec


def test_service_account_argument_wins_over_settings():
    settings = K8sStepOperatorSettings(service_account_name="from-settings")
    assert _pod(settings)["spec"]["serviceAccountName"] == "from-settings"
    assert _pod(settings, service_account="explicit")["spec"]["serviceAccountName"] == "explicit"
    assert "serviceAccountName" not in _pod()["spec"]


def test_additional_pod_spec_args_follow_zenml_rules():
    settings = K8sStepOperatorSettings(
        pod_settings={
            "node_selectors": {"pool": "gpu"},
            "volumes": [{"name": "a", "emptyDir": {}}],
            "additional_pod_spec_args": {
                "node_selector": {"zone": "z1"},
                "volumes": [{"name": "b", "emptyDir": {}}],
                "dns_policy": "None",
                "containers": [{"name": "helper", "image": "{{ image }}"}],
            },
        }
    )
    spec = _pod(settings)["spec"]
    assert spec["nodeSelector"] == {"pool": "gpu", "zone": "z1"}
    assert [v["name"] for v in spec["volumes"]] == ["a", "b"]
    assert spec["dnsPolicy"] == "None"
    assert spec["containers"][1] == {"name": "helper", "image": IMAGE}


def test_pod_spec_overrides_are_merged_last():
    settings = K8sStepOperatorSettings(
        pod_settings={
            "tolerations": [{"key": "a", "operator": "Exists"}],
            "resources": {"requests": {"cpu": "1"}},
            "pod_spec_overrides": {
                "tolerations": [{"key": "b", "operator": "Exists"}],
                "restart_policy": "OnFailure",
                "termination_grace_period_seconds": None,
                "containers": [
                    {"name": "main", "resources": {"limits": {"cpu": "2"}}, "args": ["--x"]},
                    {"name": "sidecar", "image": "busybox"},
                ],
            },
        }
    )
    spec = _pod(settings)["spec"]
    assert spec["tolerations"] == [{"key": "b", "operator": "Exists"}]
    assert spec["restartPolicy"] == "OnFailure"
    assert "terminationGracePeriodSeconds" not in spec
    main = _main({"spec": spec})
    assert main["resources"] == {"requests": {"cpu": "1", "memory": "400Mi"}, "limits": {"cpu": "2"}}
    assert main["args"] == ["--x"] and main["image"] == IMAGE
    assert [c["name"] for c in spec["containers"]] == ["main", "sidecar"]


def test_overrides_cannot_drop_the_main_container():
    settings = K8sStepOperatorSettings(pod_settings={"pod_spec_overrides": {"containers": None}})
    with pytest.raises(ValueError, match="no 'main' container"):
        _pod(settings)


def _write(tmp_path, document, name="template.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document) if not isinstance(document, str) else document)
    return str(path)


POD_TEMPLATE = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "ignored", "uid": "123", "labels": {"tier": "batch", "step": "ignored"}},
    "spec": {
        "dnsPolicy": "ClusterFirst",
        "restartPolicy": "Always",
        "containers": [
            {"name": "main", "image": "ignored", "workingDir": "/app", "env": [{"name": "T", "value": "1"}]},
        ],
        "tolerations": [{"key": "from-template", "operator": "Exists"}],
    },
    "status": {"phase": "Running"},
}


def test_pod_template_file_is_the_base(tmp_path):
    path = _write(tmp_path, POD_TEMPLATE)
    settings = K8sStepOperatorSettings(
        pod_settings={"pod_template_file": path, "env": [{"name": "U", "value": "2"}]}
    )
    pod = _pod(settings, template=load_pod_template(path))
    assert pod["metadata"]["name"] != "ignored"
    assert "uid" not in pod["metadata"] and "status" not in pod
    assert pod["metadata"]["labels"]["tier"] == "batch"
    assert pod["metadata"]["labels"]["step"] == "trainer"
    assert pod["spec"]["dnsPolicy"] == "ClusterFirst"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["tolerations"] == [{"key": "from-template", "operator": "Exists"}]
    main = _main(pod)
    assert main["image"] == IMAGE and main["workingDir"] == "/app"
    assert main["env"] == [{"name": "T", "value": "1"}, {"name": "U", "value": "2"}]


def test_pod_template_kinds(tmp_path):
    template = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": "t"},
        "template": {"metadata": {"labels": {"x": "y"}}, "spec": {"node_selector": {"pool": "a"}}},
    }
    assert load_pod_template(_write(tmp_path, template)) == {
        "metadata": {"labels": {"x": "y"}},
        "spec": {"nodeSelector": {"pool": "a"}},
    }
    bare = {"spec": {"containers": [{"name": "main", "working_dir": "/w"}]}}
    assert load_pod_template(_write(tmp_path, bare, "bare.yaml"))["spec"] == {
        "containers": [{"name": "main", "workingDir": "/w"}]
    }


def test_pod_template_errors(tmp_path):
    with pytest.raises(ValueError, match=r"pod_settings.pod_template_file \(.*missing.yaml\): cannot read file"):
        load_pod_template(str(tmp_path / "missing.yaml"))
    bad_kind = _write(tmp_path, {"kind": "Deployment", "spec": {}}, "d.yaml")
    with pytest.raises(ValueError, match="kind: 'Deployment' is not allowed; allowed: Pod, PodTemplate"):
        load_pod_template(bad_kind)
    typo = _write(tmp_path, {"kind": "Pod", "spec": {"containers": [{"name": "main", "imagee": "x"}]}}, "t.yaml")
    with pytest.raises(ValueError, match=r"Pod.spec.containers\[0\].imagee: unknown field; allowed: args"):
        load_pod_template(typo)
    two = _write(tmp_path, "kind: Pod\n---\nkind: Pod\n", "two.yaml")
    with pytest.raises(ValueError, match="expected exactly one YAML mapping"):
        load_pod_template(two)
    settings = K8sStepOperatorSettings(pod_settings={"pod_template_file": str(tmp_path / "nope.yaml")})
    with pytest.raises(ValueError, match=r"pod_settings.pod_template_file: '.*nope.yaml' was not read"):
        _pod(settings)  # the builder reads no file: its caller passes the content


def test_settings_objects_are_not_mutated_by_building():
    settings = K8sStepOperatorSettings(
        privileged=True,
        pod_settings={
            "volumes": [{"name": "d", "emptyDir": {}}],
            "volume_mounts": [{"name": "d", "mountPath": "/d"}],
            "env_from": [{"configMapRef": {"name": "cm"}}],
            "shm_size": "1Gi",
            "container_security_context": {"runAsUser": 1},
        },
    )
    before = settings.model_dump()
    pod = _pod(settings)
    _pod(settings)
    assert settings.model_dump() == before
    main = _main(pod)
    main["volumeMounts"][0]["mountPath"] = "/changed"
    main["envFrom"][0]["configMapRef"]["name"] = "changed"
    main["securityContext"]["runAsUser"] = 2
    pod["spec"]["volumes"].clear()
    assert settings.model_dump() == before


def _no_inputs(name: str) -> None:
    raise KeyError(name)  # the step has no input by that name: the text is a PVC name


def test_pvolume_claims_are_mounted_into_main_only():
    from k8s_step_operator.manifest import mount_volumes
    from k8s_step_operator.mounts import pvolume_mounts

    pod = {"spec": {"containers": [{"name": "main"}, {"name": "side"}], "volumes": [{"name": "x", "emptyDir": {}}]}}
    out = mount_volumes(pod, pvolume_mounts({"/mnt/a": "vol-1", "/mnt/b": "vol-1"}, _no_inputs))
    main, side = out["spec"]["containers"]
    assert [m["mountPath"] for m in main["volumeMounts"]] == ["/mnt/a", "/mnt/b"]
    assert "volumeMounts" not in side
    claims = [v["persistentVolumeClaim"]["claimName"] for v in out["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["vol-1", "vol-1"]
    assert len({v["name"] for v in out["spec"]["volumes"]}) == 3
    assert pod["spec"]["containers"][0] == {"name": "main"}  # input untouched


def test_a_bad_pvolume_claim_name_is_rejected():
    import pytest

    from k8s_step_operator.mounts import pvolume_mounts

    with pytest.raises(ValueError, match=r"pvolumes\['/mnt/a'\]"):
        pvolume_mounts({"/mnt/a": "Not_A_Name"}, _no_inputs)


def test_pvolumes_setting_requires_absolute_paths():
    import pytest

    from k8s_step_operator.settings import K8sStepOperatorSettings

    with pytest.raises(ValueError, match="mount path must be absolute"):
        K8sStepOperatorSettings(pvolumes={"mnt": "vol"})
    assert K8sStepOperatorSettings(pvolumes={"/mnt": "vol"}).pvolumes == {"/mnt": "vol"}


@pytest.mark.parametrize(
    "settings, template, expected",
    [
        ({}, None, False),  # the namespace's default account: no token
        ({"service_account_name": "trainer"}, None, None),  # a named account keeps the cluster's default
        ({"pod_settings": {"automount_service_account_token": True}}, None, True),
        ({"pod_settings": {"pod_spec_overrides": {"serviceAccountName": "ci"}}}, None, None),
        ({"pod_settings": {"additional_pod_spec_args": {"automountServiceAccountToken": True}}}, None, True),
        ({"pod_settings": {"pod_template_file": "t.yaml"}}, {"spec": {"serviceAccountName": "from-template"}}, None),
    ],
)
def test_the_api_token_is_mounted_only_for_a_named_account_or_when_asked(settings, template, expected):
    pod = _pod(K8sStepOperatorSettings(**settings), template=template)
    assert pod["spec"].get("automountServiceAccountToken") is expected

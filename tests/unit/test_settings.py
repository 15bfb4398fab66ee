"""Tests for k8s_step_operator.settings."""

import json

import pytest
from kubernetes.client import (
    V1Affinity,
    V1ConfigMapEnvSource,
    V1EnvFromSource,
    V1EnvVar,
    V1NodeAffinity,
    V1NodeSelector,
    V1NodeSelectorRequirement,
    V1NodeSelectorTerm,
    V1PersistentVolumeClaimVolumeSource,
    V1PodSecurityContext,
    V1ResourceRequirements,
    V1SecurityContext,
    V1Volume,
    V1VolumeMount,
)
from kubernetes.client.models import V1Toleration
from pydantic import ValidationError
from zenml.config.base_settings import BaseSettings
from zenml.integrations.kubernetes.flavors.kubernetes_step_operator_flavor import (
    KubernetesStepOperatorSettings as ZenMLStepOperatorSettings,
)
from zenml.integrations.kubernetes.pod_settings import KubernetesPodSettings

from k8s_step_operator import settings as settings_module
from k8s_step_operator.settings import (
    K8sPodSettings,
    K8sStepOperatorSettings,
    describe_settings_fields,
)


def seed_004_settings():
    """The settings example of seed 004, verbatim except for the import."""
    from kubernetes.client.models import V1Toleration

    from k8s_step_operator.settings import K8sStepOperatorSettings as KubernetesStepOperatorSettings

    kubernetes_settings = KubernetesStepOperatorSettings(
        pod_settings={
            "node_selectors": {
                "cloud.google.com/gke-nodepool": "ml-pool",
                "kubernetes.io/arch": "amd64"
            },
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "gpu-type",
                                        "operator": "In",
                                        "values": ["nvidia-tesla-v100", "nvidia-tesla-p100"]
                                    }
                                ]
                            }
                        ]
                    }
                }
            },
            "tolerations": [
                V1Toleration(
                    key="gpu",
                    operator="Equal",
                    value="present",
                    effect="NoSchedule"
                ),
                V1Toleration(
                    key="high-priority",
                    operator="Exists",
                    effect="PreferNoSchedule"
                )
            ],
            "resources": {
                "requests": {
                    "cpu": "2",
                    "memory": "4Gi",
                    "nvidia.com/gpu": "1"
                },
                "limits": {
                    "cpu": "4",
                    "memory": "8Gi",
                    "nvidia.com/gpu": "1"
                }
            },
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "8080"
            },
            "volumes": [
                {
                    "name": "data-volume",
                    "persistentVolumeClaim": {
                        "claimName": "ml-data-pvc"
                    }
                },
                {
                    "name": "config-volume",
                    "configMap": {
                        "name": "ml-config"
                    }
                }
            ],
            "volume_mounts": [
                {
                    "name": "data-volume",
                    "mountPath": "/mnt/data"
                },
                {
                    "name": "config-volume",
                    "mountPath": "/etc/ml-config",
                    "readOnly": True
                }
            ],
            "host_ipc": True,
            "image_pull_secrets": ["regcred", "gcr-secret"],
            "labels": {
                "app": "ml-pipeline",
                "environment": "production",
                "team": "data-science"
            }
        },
        kubernetes_namespace="ml-pipelines",
        service_account_name="zenml-pipeline-runner"
    )
    return kubernetes_settings


def _error(**kwargs) -> str:
    with pytest.raises(ValidationError) as err:
        K8sStepOperatorSettings(**kwargs)
    return str(err.value)


def _pod_error(**pod_settings) -> str:
    return _error(pod_settings=pod_settings)


# --------------------------------------------------------------------------- #
# Drop-in compatibility
# --------------------------------------------------------------------------- #


def test_seed_004_example_works_verbatim():
    settings = seed_004_settings()
    pod = settings.pod_settings
    assert settings.kubernetes_namespace == "ml-pipelines"
    assert settings.service_account_name == "zenml-pipeline-runner"
    assert pod.tolerations == [
        {"key": "gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"},
        {"key": "high-priority", "operator": "Exists", "effect": "PreferNoSchedule"},
    ]
    assert pod.volumes[0] == {"name": "data-volume", "persistentVolumeClaim": {"claimName": "ml-data-pvc"}}
    assert pod.volume_mounts[1] == {"name": "config-volume", "mountPath": "/etc/ml-config", "readOnly": True}
    assert pod.image_pull_secrets == ["regcred", "gcr-secret"]
    assert pod.resources["limits"]["nvidia.com/gpu"] == "1"
    assert pod.host_ipc is True
    assert pod.affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"][0]["values"] == ["nvidia-tesla-v100", "nvidia-tesla-p100"]


# Deliberate differences, each in the README's table of differences from ZenML's operator.
DIFFERENT_DEFAULTS = {"ttl_seconds_after_finished": (24 * 3600, None)}


def test_every_zenml_field_exists_with_the_same_default():
    for ours, theirs in (
        (K8sPodSettings, KubernetesPodSettings),
        (K8sStepOperatorSettings, ZenMLStepOperatorSettings),
    ):
        missing = set(theirs.model_fields) - set(ours.model_fields)
        assert not missing, f"{ours.__name__} lacks {missing}"
        for name, info in theirs.model_fields.items():
            if name in DIFFERENT_DEFAULTS:
                assert (ours.model_fields[name].get_default(), info.get_default()) == DIFFERENT_DEFAULTS[name]
                continue
            assert ours.model_fields[name].get_default(call_default_factory=True) == info.get_default(
                call_default_factory=True
            ), name


def test_zenml_pod_settings_object_is_accepted():
    zenml_pod = KubernetesPodSettings(node_selectors={"pool": "gpu"}, host_ipc=True)
    settings = K8sStepOperatorSettings(pod_settings=zenml_pod)
    assert isinstance(settings.pod_settings, K8sPodSettings)
    assert settings.pod_settings.node_selectors == {"pool": "gpu"}
    assert settings.pod_settings.host_ipc is True


def test_model_dump_round_trips_through_json():
    settings = seed_004_settings()
    again = K8sStepOperatorSettings.model_validate(json.loads(json.dumps(settings.model_dump())))
    assert again == settings


def test_component_config_keys_are_tolerated_as_extras():
    """ZenML overlays component config values (e.g. kubernetes_context) on
    the settings class, and drops misspelled keys with a warning: both need
    unknown top-level keys to be kept as extras, not rejected."""
    settings = K8sStepOperatorSettings.model_validate(
        {"kubernetes_context": "kind", "incluster": False, "privileged": True}
    )
    assert settings.privileged is True
    assert set(settings.model_extra) == {"kubernetes_context", "incluster"}


def test_generic_zenml_settings_convert_like_the_settings_resolver_does():
    generic = BaseSettings(pod_settings={"labels": {"a": "b"}}, startup_timeout=5)
    settings = K8sStepOperatorSettings(**dict(generic))
    assert settings.pod_settings.labels == {"a": "b"}
    assert settings.startup_timeout == 5


# --------------------------------------------------------------------------- #
# Normalization
# --------------------------------------------------------------------------- #


def test_snake_case_camel_case_and_model_objects_are_equivalent():
    snake = K8sPodSettings(
        volumes=[{"name": "d", "persistent_volume_claim": {"claim_name": "pvc", "read_only": True}}],
        volume_mounts=[{"name": "d", "mount_path": "/d", "sub_path": "x"}],
        tolerations=[{"key": "k", "operator": "Exists", "toleration_seconds": 10}],
        container_security_context={"run_as_non_root": True, "allow_privilege_escalation": False},
        security_context={"run_as_user": 1000, "fs_group": 2000},
        env_from=[{"config_map_ref": {"name": "cm"}}],
    )
    camel = K8sPodSettings(
        volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "pvc", "readOnly": True}}],
        volume_mounts=[{"name": "d", "mountPath": "/d", "subPath": "x"}],
        tolerations=[{"key": "k", "operator": "Exists", "tolerationSeconds": 10}],
        container_security_context={"runAsNonRoot": True, "allowPrivilegeEscalation": False},
        security_context={"runAsUser": 1000, "fsGroup": 2000},
        env_from=[{"configMapRef": {"name": "cm"}}],
    )
    models = K8sPodSettings(
        volumes=[
            V1Volume(
                name="d",
                persistent_volume_claim=V1PersistentVolumeClaimVolumeSource(claim_name="pvc", read_only=True),
            )
        ],
        volume_mounts=[V1VolumeMount(name="d", mount_path="/d", sub_path="x")],
        tolerations=[V1Toleration(key="k", operator="Exists", toleration_seconds=10)],
        container_security_context=V1SecurityContext(run_as_non_root=True, allow_privilege_escalation=False),
        security_context=V1PodSecurityContext(run_as_user=1000, fs_group=2000),
        env_from=[V1EnvFromSource(config_map_ref=V1ConfigMapEnvSource(name="cm"))],
    )
    assert snake == camel == models
    assert camel.volumes == [{"name": "d", "persistentVolumeClaim": {"claimName": "pvc", "readOnly": True}}]
    assert camel.security_context == {"runAsUser": 1000, "fsGroup": 2000}


def test_affinity_resources_and_env_from_model_objects():
    affinity = V1Affinity(
        node_affinity=V1NodeAffinity(
            required_during_scheduling_ignored_during_execution=V1NodeSelector(
                node_selector_terms=[
                    V1NodeSelectorTerm(
                        match_expressions=[V1NodeSelectorRequirement(key="k", operator="In", values=["v"])]
                    )
                ]
            )
        )
    )
    pod = K8sPodSettings(
        affinity=affinity,
        resources=V1ResourceRequirements(requests={"cpu": "1"}, limits={"cpu": "2"}),
        env=[V1EnvVar(name="A", value="1")],
    )
    assert pod.affinity == {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}]
            }
        }
    }
    assert pod.resources == {"requests": {"cpu": "1"}, "limits": {"cpu": "2"}}
    assert pod.env == [{"name": "A", "value": "1"}]


def test_convenience_forms():
    pod = K8sPodSettings(
        env={"A": "1"},
        image_pull_secrets=[{"name": "one"}, "two"],
        resources={"requests": {"cpu": 2, "memory": "1Gi"}},
    )
    assert pod.env == [{"name": "A", "value": "1"}]
    assert pod.image_pull_secrets == ["one", "two"]
    assert pod.resources == {"requests": {"cpu": "2", "memory": "1Gi"}}


def test_pod_spec_parts_are_normalized_and_overrides_keep_none():
    pod = K8sPodSettings(
        additional_pod_spec_args={"priority_class_name": "high", "dnsPolicy": "None"},
        pod_spec_overrides={"containers": [{"name": "main", "image_pull_policy": "Always", "resources": None}]},
    )
    assert pod.additional_pod_spec_args == {"priorityClassName": "high", "dnsPolicy": "None"}
    assert pod.pod_spec_overrides == {
        "containers": [{"name": "main", "imagePullPolicy": "Always", "resources": None}]
    }


def test_extras_are_normalized():
    pod = K8sPodSettings(
        init_containers=[{"name": "setup", "command": ["sh"], "volume_mounts": [{"name": "v", "mount_path": "/v"}]}],
        sidecar_containers=[{"name": "proxy", "image": "envoy"}],
        shm_size="2Gi",
        priority_class_name="high",
        runtime_class_name="nvidia",
        image_pull_policy="IfNotPresent",
        automount_service_account_token=False,
        pod_template_file="template.yaml",
    )
    assert pod.init_containers == [{"name": "setup", "command": ["sh"], "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]
    assert pod.sidecar_containers == [{"name": "proxy", "image": "envoy"}]
    assert pod.shm_size == "2Gi"
    assert pod.automount_service_account_token is False


def test_new_step_operator_fields_have_documented_defaults():
    settings = K8sStepOperatorSettings()
    assert settings.startup_timeout == 600
    assert settings.cleanup_policy == "delete-succeeded"
    assert settings.delete_grace_period_seconds == 30
    assert settings.stream_logs is True and settings.log_prefix is True
    assert settings.kubernetes_namespace is None
    assert settings.fail_on_container_waiting_reasons == [
        "InvalidImageName",
        "ErrImagePull",
        "ImagePullBackOff",
        "CreateContainerConfigError",
    ]


def test_api_request_timeout_float_is_truncated():
    assert K8sStepOperatorSettings(api_request_timeout=7.9).api_request_timeout == 7


def test_deprecated_fields_are_accepted_with_a_warning(mocker, monkeypatch):
    monkeypatch.setattr(settings_module, "_warned_deprecated", set())
    warning = mocker.patch.object(settings_module.logger, "warning")
    settings = K8sStepOperatorSettings(pod_startup_timeout=30, pod_failure_max_retries=2)
    assert settings.pod_startup_timeout == 30
    warned = {call.args[1] for call in warning.call_args_list}
    assert warned == {"pod_startup_timeout", "pod_failure_max_retries"}
    K8sStepOperatorSettings(pod_startup_timeout=30)
    assert warning.call_count == 2  # once per field and process


# --------------------------------------------------------------------------- #
# Errors name the field path and what is allowed
# --------------------------------------------------------------------------- #


def test_unknown_typed_field_error_example_from_the_brief():
    message = _pod_error(tolerations=[{"key": "gpu", "efect": "NoSchedule"}])
    assert (
        "pod_settings.tolerations[0].efect: unknown field; allowed: effect, key, "
        "operator, toleration_seconds, value" in message
    )


def test_unknown_nested_snake_case_field():
    message = _pod_error(volumes=[{"name": "v", "persistent_volume_claim": {"claim_nme": "x"}}])
    assert "pod_settings.volumes[0].persistent_volume_claim.claim_nme: unknown field; allowed: claim_name, read_only" in message


def test_unknown_pod_settings_field_lists_allowed_fields():
    message = _pod_error(node_selector={"a": "b"})
    assert "pod_settings.node_selector: unknown field (did you mean 'node_selectors'?); allowed: " in message
    assert "additional_pod_spec_args, affinity, annotations" in message
    assert "volume_mounts, volumes" in message
    with pytest.raises(ValidationError, match="pod_settings.colour: unknown field"):
        K8sPodSettings(colour="red")


@pytest.mark.parametrize(
    "resources, path, fragment",
    [
        ({"requests": {"memory": "4Gx"}}, "pod_settings.resources.requests['memory']: '4Gx'", "Ki, Mi, Gi"),
        ({"limits": {"cpu": "-1"}}, "pod_settings.resources.limits['cpu']: '-1' is negative", ">= 0"),
        ({"requests": {"memory": "8Gi"}, "limits": {"memory": "4Gi"}}, "pod_settings.resources.requests['memory']: '8Gi' exceeds", "<= its limit"),
        ({"limit": {"cpu": "1"}}, "pod_settings.resources.limit: unknown field", "allowed: claims, limits, requests"),
    ],
)
def test_resource_errors(resources, path, fragment):
    message = _pod_error(resources=resources)
    assert path in message and fragment in message


def test_label_and_annotation_errors():
    assert "pod_settings.labels: 'bad key' is not a valid label key" in _pod_error(labels={"bad key": "x"})
    assert "pod_settings.labels['team']: 'data science' is not a valid label value; allowed:" in _pod_error(
        labels={"team": "data science"}
    )
    message = _pod_error(labels={"step": "x"})
    assert "pod_settings.labels['step']: reserved for the operator" in message
    assert "app.kubernetes.io/managed-by" in message
    assert "pod_settings.annotations: 'a b' is not a valid annotation key" in _pod_error(annotations={"a b": "x"})
    assert "pod_settings.annotations['k8s-step-operator.zenml.io/x']: keys starting with" in _pod_error(
        annotations={"k8s-step-operator.zenml.io/x": "y"}
    )
    assert "pod_settings.node_selectors['pool']: 'a b'" in _pod_error(node_selectors={"pool": "a b"})


def test_enum_errors_list_allowed_values():
    assert "pod_settings.image_pull_policy: 'Sometimes' is not allowed; allowed: Always, IfNotPresent, Never" in _pod_error(
        image_pull_policy="Sometimes"
    )
    assert "pod_settings.tolerations[0].effect: 'NoSchedul' is not allowed; allowed: NoExecute, NoSchedule, PreferNoSchedule" in _pod_error(
        tolerations=[{"key": "a", "effect": "NoSchedul"}]
    )
    assert "pod_settings.tolerations[0].operator: 'Is' is not allowed; allowed: Equal, Exists" in _pod_error(
        tolerations=[{"key": "a", "operator": "Is"}]
    )


def test_container_errors():
    assert "pod_settings.sidecar_containers[0].restartPolicy: 'Never' is not allowed for a sidecar; allowed: Always" in _pod_error(
        sidecar_containers=[{"name": "s", "restartPolicy": "Never"}]
    )
    assert "pod_settings.init_containers[0].name: 'main' is reserved" in _pod_error(init_containers=[{"name": "main"}])
    assert "pod_settings.init_containers[1].name: duplicate name 'a'" in _pod_error(
        init_containers=[{"name": "a"}, {"name": "a"}]
    )
    assert "pod_settings.sidecar_containers[0].name: 'a' is already used by an init container" in _pod_error(
        init_containers=[{"name": "a"}], sidecar_containers=[{"name": "a"}]
    )
    assert "pod_settings.init_containers[0].name: required" in _pod_error(init_containers=[{"image": "x"}])
    assert "pod_settings.init_containers[0].name: 'Setup' is not a valid DNS-1123 label" in _pod_error(
        init_containers=[{"name": "Setup"}]
    )


def test_volume_errors():
    assert "pod_settings.volumes[0].name: 'Data' is not a valid DNS-1123 label" in _pod_error(volumes=[{"name": "Data"}])
    assert "pod_settings.volumes[1].name: duplicate name 'd'" in _pod_error(volumes=[{"name": "d"}, {"name": "d"}])
    assert "pod_settings.volume_mounts[0].mountPath: required" in _pod_error(volume_mounts=[{"name": "d"}])
    assert "pod_settings.volumes[0].name: 'k8s-step-operator-shm' is reserved" in _pod_error(
        shm_size="1Gi", volumes=[{"name": "k8s-step-operator-shm", "emptyDir": {}}]
    )
    assert "pod_settings.shm_size: '1Gx' is not a valid quantity" in _pod_error(shm_size="1Gx")
    assert "pod_settings.shm_size: must be greater than 0" in _pod_error(shm_size="0")


def test_name_errors():
    assert "pod_settings.image_pull_secrets[1]: 'Bad_Secret' is not a valid DNS-1123 subdomain" in _pod_error(
        image_pull_secrets=["ok", "Bad_Secret"]
    )
    assert "pod_settings.priority_class_name: 'High' is not a valid DNS-1123 subdomain" in _pod_error(
        priority_class_name="High"
    )
    assert "kubernetes_namespace: 'ML_Pipelines' is not a valid DNS-1123 label" in _error(
        kubernetes_namespace="ML_Pipelines"
    )
    assert "service_account_name: 'Runner!' is not a valid DNS-1123 subdomain" in _error(
        service_account_name="Runner!"
    )


def test_pod_count_must_be_positive_and_more_are_accepted():
    assert "pod_count" in _error(pod_count=0)
    assert K8sStepOperatorSettings(pod_count=4).pod_count == 4  # a command step runs on 4 pods


def test_default_memory_request_and_queue_name_are_checked():
    assert "default_memory_request" in _error(default_memory_request="lots")
    assert "queue_name" in _error(queue_name="not a label!")
    assert K8sStepOperatorSettings(default_memory_request=None).default_memory_request is None


@pytest.mark.parametrize(
    "field",
    [
        "startup_timeout",
        "delete_grace_period_seconds",
        "api_request_timeout",
        "ttl_seconds_after_finished",
        "active_deadline_seconds",
        "max_api_retries",
    ],
)
def test_negative_timeouts_name_the_field(field):
    assert f"{field}: must be >= 0 (got -1)" in _error(**{field: -1})


def test_zero_startup_timeout_and_deadline_are_rejected():
    assert "startup_timeout: must be a positive number of seconds" in _error(startup_timeout=0)
    assert "active_deadline_seconds: 0 is not allowed for a pod" in _error(active_deadline_seconds=0)


@pytest.mark.parametrize(
    "field, value",
    [
        ("stream_logs", "maybe"),
        ("max_api_retries", "many"),
        ("cleanup_policy", "never"),
        ("privileged", [1]),
    ],
)
def test_wrong_types_name_the_field(field, value):
    with pytest.raises(ValidationError) as err:
        K8sStepOperatorSettings(**{field: value})
    assert [e["loc"] for e in err.value.errors()] == [(field,)]


def test_cleanup_policy_error_lists_allowed_values():
    assert "'keep', 'delete' or 'delete-succeeded'" in _error(cleanup_policy="never")


# --------------------------------------------------------------------------- #
# README reference
# --------------------------------------------------------------------------- #


def test_describe_settings_fields_covers_every_field_with_a_description():
    rows = describe_settings_fields()
    fields = [row.field for row in rows]
    expected = list(K8sStepOperatorSettings.model_fields) + [
        f"pod_settings.{name}" for name in K8sPodSettings.model_fields
    ]
    assert fields == expected
    assert all(row.description for row in rows)
    by_field = {row.field: row for row in rows}
    assert by_field["startup_timeout"].default == "600.0"
    assert by_field["cleanup_policy"].type == "Literal['keep', 'delete', 'delete-succeeded']"
    assert by_field["max_api_retries"].type == "int (>= 0)"

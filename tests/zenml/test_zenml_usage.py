"""ZenML as users drive it: CLI registration, settings keys, run configs, stack export/import,
and pipelines whose steps run as Pods on the local cluster."""

from __future__ import annotations

import json
import textwrap
import time

import pytest
import yaml
from kubernetes import client

from k8s_step_operator.manifest import LABEL_MANAGED_BY, LABEL_PIPELINE, LABEL_STEP, MANAGED_BY

from .conftest import OPERATOR, PROJECT, ZenMLProject


def pods(api_client: client.ApiClient, namespace: str, selector: str) -> list:
    return client.CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector=selector).items


def pods_after_deletion(api_client: client.ApiClient, namespace: str, selector: str, settle: float = 30.0) -> list:
    """The pods left once a deletion had ``settle`` seconds: garbage collection deletes a step's pod
    after its Secret, and the kubelet confirms the deletion of a pod whose phase it had not yet
    reported as ended."""
    deadline = time.monotonic() + settle
    while (left := pods(api_client, namespace, selector)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def secrets_of_operator(api_client: client.ApiClient, namespace: str, settle: float = 20.0) -> list:
    """The operator's Secrets left in ``namespace``, once garbage collection had ``settle`` seconds
    to remove those owned by deleted pods."""
    core = client.CoreV1Api(api_client)
    deadline = time.monotonic() + settle
    while True:
        items = core.list_namespaced_secret(namespace, label_selector=f"{LABEL_MANAGED_BY}={MANAGED_BY}").items
        if not items or time.monotonic() > deadline:
            return items
        time.sleep(0.2)


def test_flavor_is_stored_with_the_installed_module_path(zenml_project: ZenMLProject):
    out = zenml_project.python(
        "-c",
        "from zenml.client import Client; "
        "print(Client().get_flavor_by_name_and_type('k8s', 'step_operator').source)",
        check=True,
    ).stdout
    assert out.strip().splitlines()[-1] == "k8s_step_operator.flavor.K8sStepOperatorFlavor"


def test_registered_component_keeps_its_configuration(zenml_project: ZenMLProject):
    out = zenml_project.python(
        "-c",
        "import json; from zenml.client import Client; "
        f"c = Client().get_stack_component('step_operator', '{OPERATOR}'); "
        "print(json.dumps(c.configuration))",
        check=True,
    ).stdout
    config = json.loads(out.strip().splitlines()[-1])
    assert config["kubernetes_namespace"] == zenml_project.namespace
    assert config["local"] is True
    assert config["startup_timeout"] == 60


def test_unknown_config_key_is_rejected_by_the_cli(zenml_project: ZenMLProject):
    proc = zenml_project.zenml(
        "step-operator", "register", "bad-op", "--flavor=k8s", "--kubernetes_namespce=x", check=False
    )
    assert proc.returncode != 0
    assert "kubernetes_namespce" in proc.stdout + proc.stderr


def test_pipeline_step_runs_in_a_pod_and_streams_its_logs(zenml_project: ZenMLProject, api_client):
    proc = zenml_project.pipeline("hello")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "RUN-STATUS completed" in output
    # the step's own prints reach the orchestrator's console, prefixed and in order
    lines = [line for line in output.splitlines() if line.startswith("[hello] ") and ("line" in line or "pod=" in line)]
    assert lines == ["[hello] hello line 0", "[hello] hello line 1", "[hello] hello line 2", "[hello] in-pod=True"]
    assert "scheduled on node local-cpu" in output
    # default clean-up: a succeeded pod is deleted, and the env Secret never outlives the step
    assert pods_after_deletion(api_client, zenml_project.namespace, f"{LABEL_STEP}=hello") == []
    assert secrets_of_operator(api_client, zenml_project.namespace) == []


def test_failing_step_fails_the_run_with_its_reason_and_keeps_the_pod(zenml_project: ZenMLProject, api_client):
    proc = zenml_project.pipeline("failing")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "boom: the step itself failed" in output
    assert "[boom] about to fail" in output
    kept = pods(api_client, zenml_project.namespace, f"{LABEL_STEP}=boom")
    assert len(kept) == 1  # kept for debugging; the kubelet reports its phase about a second after the exit
    deadline = time.monotonic() + 30
    while pods(api_client, zenml_project.namespace, f"{LABEL_STEP}=boom")[0].status.phase != "Failed":
        assert time.monotonic() < deadline, "the kept pod never reached phase Failed"
        time.sleep(0.2)
    assert secrets_of_operator(api_client, zenml_project.namespace) == []


def test_unpullable_image_fails_fast_naming_image_and_reason(zenml_project: ZenMLProject, api_client):
    proc = zenml_project.pipeline("unpullable")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "registry.k8sso.local/k8sso/none-such:1" in output  # a real pull, answered 404 by the local registry
    assert "ErrImagePull" in output or "ImagePullBackOff" in output
    assert secrets_of_operator(api_client, zenml_project.namespace) == []


@pytest.fixture
def seed_prerequisites(api_client, zenml_project: ZenMLProject):
    """What the seed example references: a PVC, a ConfigMap and a service account."""
    core = client.CoreV1Api(api_client)
    ns = zenml_project.namespace
    core.create_namespaced_service_account(ns, {"metadata": {"name": "zenml-pipeline-runner"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "ml-config"}, "data": {"learning_rate": "0.01"}})
    core.create_namespaced_persistent_volume_claim(
        ns,
        {
            "metadata": {"name": "ml-data-pvc"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    yield
    core.delete_namespaced_persistent_volume_claim("ml-data-pvc", ns)
    core.delete_namespaced_config_map("ml-config", ns)
    core.delete_namespaced_service_account("zenml-pipeline-runner", ns)


def test_seed_settings_land_on_the_gpu_node(zenml_project: ZenMLProject, api_client, seed_prerequisites):
    proc = zenml_project.pipeline("seed")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "scheduled on node local-gpu" in output
    assert "[train_on_gpu] trained with lr=0.01" in output


def test_settings_keys_all_reach_the_pod(zenml_project: ZenMLProject, api_client):
    config = zenml_project.root / "keep.yaml"
    config.write_text(yaml.safe_dump({"settings": {"step_operator": {"cleanup_policy": "keep"}}}))
    proc = zenml_project.pipeline("settings-keys", "--config", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = {
        p.metadata.labels[LABEL_STEP]: p.metadata.labels.get("settings-key")
        for p in pods(api_client, zenml_project.namespace, f"{LABEL_PIPELINE}=settings_keys_pipeline")
    }
    assert found == {"keyed_plain": "plain", "keyed_flavor": "flavor", "keyed_component": "component"}


def test_run_config_yaml_selects_the_operator_and_settings(zenml_project: ZenMLProject, api_client):
    config = zenml_project.root / "run.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            steps:
              from_config:
                step_operator: {OPERATOR}
                settings:
                  step_operator:
                    cleanup_policy: keep
                    pod_settings:
                      labels:
                        from-yaml: "yes"
            """
        )
    )
    proc = zenml_project.pipeline("config", "--config", str(config))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "[from_config] in-pod=True" in output
    kept = pods(api_client, zenml_project.namespace, f"{LABEL_STEP}=from_config")
    assert kept and kept[0].metadata.labels["from-yaml"] == "yes"


def test_stack_export_and_import(zenml_project: ZenMLProject):
    exported = zenml_project.root / "stack.yaml"
    zenml_project.zenml("stack", "export", "k8s-stack", str(exported))
    data = yaml.safe_load(exported.read_text())
    (component,) = data["components"]["step_operator"]
    assert component["flavor"] == "k8s"
    assert component["configuration"]["kubernetes_namespace"] == zenml_project.namespace
    zenml_project.zenml("stack", "import", "k8s-stack-copy", "-f", str(exported))
    out = zenml_project.python(
        "-c",
        "import json; from zenml.client import Client; "
        "s = Client().get_stack('k8s-stack-copy'); "
        "(op,) = s.components['step_operator']; "
        "print(json.dumps([op.flavor_name, op.configuration]))",
        check=True,
    ).stdout
    flavor, configuration = json.loads(out.strip().splitlines()[-1])
    assert flavor == "k8s"
    assert configuration["kubernetes_namespace"] == zenml_project.namespace


def test_quickstart_example_trains_on_the_gpu_node(zenml_project: ZenMLProject):
    """examples/quickstart, as the demo runs it: the train step in a pod on local-gpu, logs streamed."""
    example = PROJECT.parent.parent / "examples" / "quickstart" / "run.py"
    (zenml_project.root / "quickstart.py").write_text(example.read_text())
    proc = zenml_project.python("quickstart.py", env={"K8SSO_STEP_OPERATOR": OPERATOR})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "scheduled on node local-gpu" in output
    assert "[train] epoch 299" in output
    assert "completed; learned y = 3.00 x + 2.00" in output

"""The CLI against a real control plane: `rbac` output applied, `doctor`, the RBAC really
being sufficient (and no more) for the operator's calls, `local-cluster` and `register`.

`rbac`/`doctor` run in-process (CliRunner) against the session cluster; `local-cluster`
and `register` run the installed console script in a subprocess, the way users do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator
from unittest.mock import patch

import pytest
import yaml
from click.testing import CliRunner, Result
from k8sso_localcluster import cli_state, network, nodes
from k8sso_localcluster.images import current
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from k8s_step_operator import rbac
from k8s_step_operator.cli import main
from k8s_step_operator.registration import FLAVOR_SOURCE

from ..rbac_support import kubectl_apply

SA = "zenml-runner"
CLI = str(Path(sys.executable).with_name("k8s-step-operator"))
RESOURCE_KINDS = ["jobs.batch", "persistentvolumeclaims", "volumesnapshots.snapshot.storage.k8s.io"]


def _cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _doctor(kubeconfig: Path, namespace: str, *extra: str) -> Result:
    return _cli("doctor", "--kubeconfig", str(kubeconfig), "--namespace", namespace, *extra)


def _subject(namespace: str, name: str = SA) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


@pytest.fixture
def as_service_account(local_cluster: Any, namespace: str) -> Iterator[client.ApiClient]:
    """An ApiClient that acts as the service account (admin credential + Impersonate-User)."""
    api = config.new_client_from_config(config_file=str(local_cluster.kubeconfig))
    api.set_default_header("Impersonate-User", _subject(namespace))
    yield api
    api.close()


def _status(call: Any) -> int:
    """HTTP status of an API call: 200 on success, the error status otherwise."""
    try:
        call()
        return 200
    except ApiException as exc:
        return exc.status


# --------------------------------------------------------------- rbac + doctor
def test_rbac_output_applied_then_doctor_passes(local_cluster: Any, namespace: str) -> None:
    printed = _cli("rbac", "--namespace", namespace, "--service-account", SA)
    assert printed.exit_code == 0
    kubectl_apply(local_cluster.kubeconfig, printed.stdout)

    result = _doctor(local_cluster.kubeconfig, namespace, "--as", _subject(namespace))
    assert result.exit_code == 0, result.output
    assert f"service account {namespace}/{SA} exists" in result.stdout
    assert f"All {len(rbac.required_checks(namespace))} permissions are granted" in result.stdout
    assert "✗" not in result.stdout and result.stderr == ""


def test_doctor_names_the_missing_permission(local_cluster: Any, api_client: client.ApiClient, namespace: str) -> None:
    docs = rbac.manifests(namespace, SA)
    role = docs[1]
    for rule in role["rules"]:
        if rule["resources"] == ["secrets"]:
            rule["verbs"].remove("delete")
    kubectl_apply(local_cluster.kubeconfig, yaml.safe_dump_all(docs))

    result = _doctor(local_cluster.kubeconfig, namespace, "--as", _subject(namespace))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"forbidden: needs delete on secrets in {namespace}"]
    assert "✗ delete  secrets" in result.stdout


def test_doctor_without_any_rbac_lists_everything_missing(local_cluster: Any, namespace: str) -> None:
    result = _doctor(local_cluster.kubeconfig, namespace, "--as", _subject(namespace, "ghost"))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"error: service account {namespace}/ghost does not exist"
    assert f"forbidden: needs get on pods/log in {namespace}" in lines
    assert len([line for line in lines if line.startswith("forbidden:")]) == len(rbac.required_checks(namespace))


def test_doctor_as_admin_and_missing_namespace(local_cluster: Any, namespace: str) -> None:
    assert _doctor(local_cluster.kubeconfig, namespace).exit_code == 0
    missing = _doctor(local_cluster.kubeconfig, "no-such-namespace-" + uuid.uuid4().hex[:6])
    assert missing.exit_code == 1
    assert "does not exist" in missing.stderr


def test_doctor_with_a_bogus_context_fails_clearly(local_cluster: Any) -> None:
    result = _cli("doctor", "--kubeconfig", str(local_cluster.kubeconfig), "--context", "bogus", "-n", "x")
    assert result.exit_code == 1
    assert "context `bogus` does not exist in kubeconfig" in result.stdout
    assert "available: k8s-step-operator-local" in result.stdout
    assert "context `bogus` not found" in result.stderr
    missing_file = _cli("doctor", "--kubeconfig", "/nonexistent/kubeconfig")
    assert missing_file.exit_code == 1 and "does not exist" in missing_file.stderr


def test_doctor_unreachable_server(tmp_path: Path, local_cluster: Any) -> None:
    kubeconfig = yaml.safe_load(Path(local_cluster.kubeconfig).read_text())
    kubeconfig["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    result = _cli("doctor", "--kubeconfig", str(path))
    assert result.exit_code == 1
    assert "cannot reach the API server at https://127.0.0.1:1" in result.stderr


# --------------------------------------- the printed RBAC is really sufficient
def _operator_as(api: client.ApiClient, namespace: str) -> Any:
    """The real ``K8sStepOperator``, talking through ``api`` (the impersonated service account)."""
    import datetime as dt

    from zenml.enums import StackComponentType

    from k8s_step_operator.flavor import K8sStepOperatorConfig
    from k8s_step_operator.step_operator import K8sStepOperator

    now = dt.datetime.now(dt.timezone.utc)
    operator = K8sStepOperator(
        name="rbac-check", id=uuid.uuid4(), config=K8sStepOperatorConfig(kubernetes_namespace=namespace),
        flavor="k8s", type=StackComponentType.STEP_OPERATOR, user=None, created=now, updated=now,
    )
    operator._api = api
    return operator


def _delete_status(operator: Any, path: str, **options: Any) -> int:
    """``K8sStepOperator._delete`` (cancel / clean-up) as an HTTP status: 200, or 404 when already gone."""
    from k8s_step_operator.settings import K8sStepOperatorSettings

    return 200 if operator._delete(K8sStepOperatorSettings(), path, **options) else 404


def _send_secret(operator: Any, settings: Any, created: dict, secret: dict) -> None:
    """What the sender thread does after submit: the one-step batch lingers, then its Secret (owned by the Job)
    goes, then the Service."""
    import datetime as dt

    from k8s_step_operator.submission import Submission

    meta = created["metadata"]
    sub = Submission(meta["namespace"], meta["name"], meta["name"], settings, dt.datetime.now(dt.timezone.utc), batched=True)
    batch = operator._batches.join((meta["namespace"], "run-1"), secret["metadata"]["name"])
    operator._linger(operator._batches.hand_in(batch, sub, created, secret))
    assert not sub.refused, sub.refused


def test_printed_rbac_allows_exactly_the_operators_calls(
    local_cluster: Any, api_client: client.ApiClient, namespace: str, as_service_account: client.ApiClient
) -> None:
    """As the service account, make the operator's requests; then try what is not granted."""
    from k8s_step_operator import jobs, manifest
    from k8s_step_operator.kube.logs import LogFollower
    from k8s_step_operator.kube.podwatch import PodWatch
    from k8s_step_operator.settings import K8sStepOperatorSettings

    kubectl_apply(local_cluster.kubeconfig, _cli("rbac", "-n", namespace, "--service-account", SA).stdout)
    api = as_service_account
    settings = K8sStepOperatorSettings()
    identity = manifest.StepIdentity("run-1", "pipe", "train", str(uuid.uuid4()))
    pod = manifest.build_pod(settings, identity, current("busybox"), ["sh", "-c", "echo hello"], namespace)
    secret = manifest.build_env_secret("train-env", namespace, identity, {"ZENML_STORE_URL": "sqlite://"}, owner="train")
    core = client.CoreV1Api(api_client)

    # submit: POST pod (dry run), POST job (running), POST secret (owned by the job);
    # a multi-pod step also POSTs its headless Service.
    operator = _operator_as(api, namespace)
    job = jobs.build_job(pod, "train", ttl_seconds_after_finished=300)
    operator._dry_run_pod(settings, pod, job)
    created = operator.create_job(settings, job)
    _send_secret(operator, settings, created, secret)
    assert created["spec"]["suspend"] is False
    stored = core.read_namespaced_secret("train-env", namespace)
    assert stored.metadata.owner_references[0].uid == created["metadata"]["uid"]
    assert stored.immutable is True  # the kubelet need not watch it
    two = settings.model_copy(update={"pod_count": 2})
    pair = manifest.StepIdentity("run-1", "pipe", "pair", str(uuid.uuid4()))
    pair_pod = manifest.build_pod(two, pair, current("busybox"), ["true"], namespace)
    pair_secret = manifest.build_env_secret("pair-env", namespace, pair, {}, owner="pair")
    pair_job = jobs.build_job(pair_pod, "pair", ttl_seconds_after_finished=300, pod_count=2)
    operator._dry_run_pod(two, pair_pod, pair_job)
    _send_secret(operator, two, operator.create_job(two, pair_job), pair_secret)
    assert core.read_namespaced_service("pair", namespace).spec.cluster_ip == "None"

    # get_status / wait: the operator's shared watch (LIST + WATCH by label selector).
    watch = PodWatch(api, namespace)
    try:
        assert watch.wait_synced(timeout=15), watch.last_error
        deadline = time.monotonic() + 10
        while watch.watch_requests == 0 and time.monotonic() < deadline:
            time.sleep(0.05)

        def finished() -> str | None:  # the watch sees the Job's pod finish
            pods = watch.select(jobs.JOB_NAME_LABEL, "train")
            phase = ((pods[0][0] if pods else {}).get("status") or {}).get("phase")
            return phase if phase in ("Succeeded", "Failed") else None

        assert watch.wait_for(finished, timeout=90) == "Succeeded", watch.last_error
        [(seen, _)] = watch.select(jobs.JOB_NAME_LABEL, "train")
        name = seen["metadata"]["name"]
        time.sleep(0.5)
        assert "403" not in watch.last_error and "Forbidden" not in watch.last_error, watch.last_error
    finally:
        watch.close()

    # logs: GET pods/log with follow, through the operator's LogFollower.
    lines: list[str] = []
    follower = LogFollower(api, namespace, name, "main", lines.append).start()
    assert follower.join(30)
    assert lines == ["hello"]

    # after a restart: LIST jobs by label; clean-up: DELETE the secret (kept pods) or the job (a second
    # delete is a 404, which the operator ignores).
    step_run = SimpleNamespace(id=identity.step_run_id, name="train")
    with patch.object(type(operator), "_settings", return_value=settings):
        assert operator._locate(step_run).job == "train"
    assert _delete_status(operator, f"/api/v1/namespaces/{namespace}/secrets/pair-env") == 200
    jobs_path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    assert _delete_status(operator, f"{jobs_path}/train") == 200
    assert _delete_status(operator, f"{jobs_path}/pair") == 200
    assert _delete_status(operator, f"{jobs_path}/train") == 404

    # ... and nothing else.
    impersonated = client.CoreV1Api(api)
    other = "default"
    assert _status(lambda: impersonated.read_namespaced_secret("anything", namespace)) == 403
    assert _status(lambda: impersonated.list_namespaced_secret(namespace)) == 403
    assert _status(lambda: impersonated.list_namespaced_config_map(namespace)) == 403
    assert _status(lambda: impersonated.create_namespaced_pod(other, {**pod, "metadata": {"name": name}})) == 403
    assert _status(lambda: impersonated.list_namespaced_pod(other)) == 403
    assert _status(lambda: impersonated.create_namespaced_secret(other, {**secret, "metadata": {"name": "x"}})) == 403
    assert _status(lambda: impersonated.replace_namespaced_pod(name, namespace, {**pod, "metadata": {"name": name}})) == 403
    assert _status(lambda: impersonated.delete_namespaced_pod(name, namespace)) == 403  # only through its Job
    assert _status(lambda: impersonated.list_namespace()) == 403


def test_resource_steps_rbac_with_cluster_role(
    local_cluster: Any, api_client: client.ApiClient, namespace: str, as_service_account: client.ApiClient
) -> None:
    kind_args = [x for kind in RESOURCE_KINDS for x in ("--kind", kind)] + ["--action", "create", "--action", "delete"]
    printed = _cli("rbac", "-n", namespace, "--service-account", SA, *kind_args)
    assert printed.exit_code == 0
    docs = list(yaml.safe_load_all(printed.stdout))
    assert [d["kind"] for d in docs][-2:] == ["ClusterRole", "ClusterRoleBinding"]
    name = rbac.cluster_role_name(namespace, SA)
    kubectl_apply(local_cluster.kubeconfig, printed.stdout)
    rbac_api = client.RbacAuthorizationV1Api(api_client)
    try:
        result = _doctor(local_cluster.kubeconfig, namespace, "--as", _subject(namespace), *kind_args)
        assert result.exit_code == 0, result.output
        assert "get     storageclasses.storage.k8s.io" in result.stdout

        narrower = _doctor(
            local_cluster.kubeconfig, namespace, "--as", _subject(namespace), "--kind", "persistentvolumeclaims", "--action", "patch"
        )
        assert narrower.exit_code == 1
        assert narrower.stderr.strip().splitlines() == [f"forbidden: needs patch on persistentvolumeclaims in {namespace}"]

        core, batch = client.CoreV1Api(as_service_account), client.BatchV1Api(as_service_account)
        storage = client.StorageV1Api(as_service_account)
        claim = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
        }
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "j"},
            "spec": {
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": current("busybox")}]}
                }
            },
        }
        assert _status(lambda: core.create_namespaced_persistent_volume_claim(namespace, claim)) == 200
        assert _status(lambda: core.read_namespaced_persistent_volume_claim("data", namespace)) == 200
        assert _status(lambda: batch.create_namespaced_job(namespace, job)) == 200
        assert _status(lambda: batch.list_namespaced_job(namespace, field_selector="metadata.name=j")) == 200
        assert _status(lambda: storage.read_storage_class("no-such-class")) == 404  # allowed, just absent
        assert _status(lambda: storage.list_storage_class()) == 403  # only get
        # neither the operator (its Jobs run at once) nor these resource steps (create, delete) patch Jobs
        assert _status(lambda: batch.patch_namespaced_job("j", namespace, {"metadata": {"labels": {"a": "b"}}})) == 403
        assert _status(lambda: core.patch_namespaced_persistent_volume_claim("data", namespace, {})) == 403
        assert _status(lambda: client.AppsV1Api(as_service_account).list_namespaced_deployment(namespace)) == 403
        assert _status(lambda: batch.delete_namespaced_job("j", namespace, propagation_policy="Background")) == 200
        assert _status(lambda: core.delete_namespaced_persistent_volume_claim("data", namespace)) == 200
    finally:
        for call in (rbac_api.delete_cluster_role_binding, rbac_api.delete_cluster_role):
            try:
                call(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


# -------------------------------------------------------------- local-cluster
def _run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def test_local_cluster_up_status_down(tmp_path: Path) -> None:
    """A second cluster under a temporary root: up (twice), status, down, nothing left."""
    root = tmp_path / "lc"
    up_args = ["local-cluster", "up", "--root", str(root), "--timeout", "180"]

    stopped = _run("local-cluster", "status", "--root", str(root))
    assert stopped.returncode == 1 and "not running" in stopped.stdout
    try:
        up = _run(*up_args)
        assert up.returncode == 0, up.stdout + up.stderr
        kubeconfig = root / "kubeconfig"
        assert f"export KUBECONFIG={kubeconfig}" in up.stdout
        again = _run(*up_args)
        assert again.returncode == 0 and "already up" in again.stdout

        status = _run("local-cluster", "status", "--root", str(root))
        assert status.returncode == 0, status.stdout + status.stderr
        for component in ("etcd", "apiserver", "controller-manager", "scheduler"):
            assert component in status.stdout
        assert "local-cpu" in status.stdout and "local-gpu" in status.stdout and "Ready" in status.stdout
        slot = json.loads((root / "ready.json").read_text())["slot"]
        pids = [int(c["pid"]) for c in json.loads((root / "status.json").read_text())["components"].values()]
        supervisor = int((root / "supervisor.pid").read_text())
        api = config.new_client_from_config(config_file=str(kubeconfig))
        try:
            assert client.CoreV1Api(api).read_namespace("default").metadata.name == "default"
        finally:
            api.close()
    finally:
        down = _run("local-cluster", "down", "--root", str(root))
    assert down.returncode == 0, down.stdout + down.stderr
    assert "stopped" in down.stdout
    assert not [pid for pid in [supervisor, *pids] if cli_state.alive(pid)]
    assert cli_state.leftover_processes(cli_state.ClusterDir.at(root)) == []
    assert sorted(p.name for p in root.iterdir()) == ["logs", "supervisor.log"]
    net = network.ClusterNet(slot)  # nothing of the real nodes is left on this machine
    assert network.leftovers(net) + nodes.leftovers(net, nodes.default_nodes()) == []

    after = _run("local-cluster", "status", "--root", str(root))
    assert after.returncode == 1 and "not running" in after.stdout
    assert _run("local-cluster", "down", "--root", str(root)).returncode == 0  # idempotent


# ------------------------------------------------------------------- register
def _zenml_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    env.update(
        ZENML_CONFIG_PATH=str(tmp_path / "zenml-config"),
        ZENML_ANALYTICS_OPT_IN="false",
        ZENML_LOGGING_VERBOSITY="WARN",
        ZENML_ENABLE_RICH_TRACEBACK="false",
    )
    return env


def _zenml_python(code: str, env: dict[str, str], cwd: Path) -> Any:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


READ_STATE = """
import json
from zenml.client import Client
c = Client()
flavors = [f.source for f in c.list_flavors(name="k8s", hydrate=True).items]
comp = c.get_stack_component("step_operator", "k8s-local")
stack = c.active_stack_model
print(json.dumps({"flavors": flavors, "config": comp.configuration, "stack": stack.name,
                  "operator": [x.name for x in stack.components.get("step_operator", [])]}))
"""


def test_register_stores_the_installed_module_path(tmp_path: Path, local_cluster: Any) -> None:
    env = _zenml_env(tmp_path)
    usage = _run("register", "--stack", "s", env=env, cwd=tmp_path)
    assert usage.returncode == 2 and "--stack needs --component" in usage.stderr

    args = ["register", "--component", "k8s-local", "--namespace", "zenml", "--kubeconfig", str(local_cluster.kubeconfig)]
    first = _run(*args, "--local", "--stack", "k8s-stack", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"registered flavor `k8s` ({FLAVOR_SOURCE})" in first.stdout
    assert "registered step operator `k8s-local`" in first.stdout
    assert "`k8s-stack` is the active stack" in first.stdout

    state = _zenml_python(READ_STATE, env, tmp_path)
    assert state["flavors"] == [FLAVOR_SOURCE]
    assert state["config"]["kubernetes_namespace"] == "zenml" and state["config"]["local"] is True
    assert state["config"]["kubeconfig"] == str(Path(local_cluster.kubeconfig).resolve())
    assert state["stack"] == "k8s-stack" and state["operator"] == ["k8s-local"]

    again = _run(*args, "--local", "--stack", "k8s-stack", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"flavor `k8s` is already registered ({FLAVOR_SOURCE})" in again.stdout
    assert "step operator `k8s-local` is already registered with this configuration" in again.stdout
    assert "stack `k8s-stack` already has step operator `k8s-local`" in again.stdout

    # The registered component feeds doctor (kubeconfig + namespace) and render (configuration overlay).
    doctor = _run("doctor", "--component", "k8s-local", env=env, cwd=tmp_path)
    assert "component `k8s-local` (flavor k8s)" in doctor.stdout
    assert "(namespace zenml)" in doctor.stdout
    settings = tmp_path / "s.yaml"
    settings.write_text("pod_settings: {labels: {team: ml}}\n")
    rendered = _run("render", "--settings", str(settings), "--component", "k8s-local", env=env, cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    assert yaml.safe_load(rendered.stdout)["metadata"]["namespace"] == "zenml"


REGISTER_SRC_PREFIXED = """
import json
from zenml.client import Client
from zenml.utils import source_utils
from k8s_step_operator.flavor import K8sStepOperatorFlavor
source_utils.set_custom_source_root("/")
request = K8sStepOperatorFlavor().to_model(integration="custom", is_custom=True)
request = request.model_copy(update={"source": "src.k8s_step_operator.flavor.K8sStepOperatorFlavor"})
Client().zen_store.create_flavor(flavor=request)
print(json.dumps("ok"))
"""


def test_register_refuses_a_flavor_stored_with_another_source(tmp_path: Path) -> None:
    env = _zenml_env(tmp_path)
    _zenml_python(REGISTER_SRC_PREFIXED, env, tmp_path)
    result = _run("register", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "already registered with source `src.k8s_step_operator.flavor.K8sStepOperatorFlavor`" in result.stderr
    assert "`src.` prefix" in result.stderr and "zenml step-operator flavor delete k8s" in result.stderr

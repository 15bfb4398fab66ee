"""The KFP sample translations in ``examples/`` run end to end on the local cluster.

Each example runs as a user would run it: a script in a ZenML repository (tmp dir,
own ZenML state) whose active stack has a ``k8s`` step operator for the test's
namespace. The volume examples need the operator's ``pvolumes`` setting.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from k8sso_localcluster.csi import DRIVER
from kubernetes import client, utils

from k8s_step_operator.kube import rest
from k8s_step_operator.steps.object_watch import WaitTarget, wait_until_deleted

from ..zenml_support import BIN, src_on_pythonpath, zenml_env
from .custom_task_controller import custom_task_world

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
OPERATOR = "k8s-local"


class Project:
    """A ZenML repository in a tmp dir with the example scripts and a ``k8s`` stack."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env

    def run(self, argv: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(argv, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout)

    def zenml(self, *args: str) -> None:
        proc = self.run([str(BIN / "zenml"), *args], timeout=180)
        assert proc.returncode == 0, f"zenml {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"

    def example(self, script: str, *args: str) -> tuple[dict[str, Any], str]:
        shutil.copy(EXAMPLES / script, self.root / script)
        proc = self.run([sys.executable, script, *args])
        logs = proc.stdout + proc.stderr
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, f"{script} failed ({proc.returncode}):\n{logs[-6000:]}"
        return json.loads(lines[-1][len("RESULT "):]), logs


RUNNER = "kfp-runner"  # the step pods' ServiceAccount: the run-end clean-up hook runs in the last step's pod


def _grant_resource_steps(api: client.ApiClient, namespace: str) -> list[dict]:
    """Apply what ``k8s-step-operator rbac --resource-steps`` prints for the volume and snapshot steps,
    as a user would for pipelines whose steps (and hooks) create and delete volumes in pods."""
    printed = subprocess.run(
        [str(BIN / "k8s-step-operator"), "rbac", "-n", namespace, "--service-account", RUNNER,
         "--resource-steps", "--action", "create", "--action", "delete"],
        capture_output=True, text=True, check=True,
    ).stdout
    docs = [doc for doc in yaml.safe_load_all(printed) if doc]
    for doc in docs:
        utils.create_from_dict(api, doc)
    return [doc for doc in docs if doc["kind"].startswith("Cluster")]


@pytest.fixture
def project(tmp_path: Path, namespace: str, local_cluster: Any, api_client: client.ApiClient) -> Iterator[Project]:
    cluster_scoped = _grant_resource_steps(api_client, namespace)
    try:
        yield _project(tmp_path, namespace, local_cluster)
    finally:  # the namespace goes with the test; cluster-scoped grants do not
        rbac = client.RbacAuthorizationV1Api(api_client)
        for doc in cluster_scoped:
            delete = (rbac.delete_cluster_role if doc["kind"] == "ClusterRole" else rbac.delete_cluster_role_binding)
            delete(doc["metadata"]["name"])


def _project(tmp_path: Path, namespace: str, local_cluster: Any) -> Project:
    env = zenml_env(tmp_path, K8SSO_STEP_OPERATOR=OPERATOR, PYTHONPATH=src_on_pythonpath())
    proj = Project(tmp_path, env)
    proj.zenml("init")
    proj.zenml("step-operator", "flavor", "register", "k8s_step_operator.flavor.K8sStepOperatorFlavor")
    proj.zenml(
        "step-operator", "register", OPERATOR, "--flavor=k8s", f"--kubernetes_namespace={namespace}",
        f"--kubeconfig={local_cluster.kubeconfig}", "--local=True", f"--service_account_name={RUNNER}",
    )
    proj.zenml("stack", "register", "k8s-stack", "-o", "default", "-a", "default", "-s", OPERATOR, "--set")
    return proj


def _storage_events(api: client.ApiClient, namespace: str) -> set[tuple[str, str]]:
    """(reporting component, reason) of the namespace's events, the component without its instance suffix."""
    events = client.CoreV1Api(api).list_namespaced_event(namespace).items
    return {((e.source.component or "").split("_")[0], e.reason) for e in events}


def _gone(api: client.ApiClient, list_path: str, name: str) -> None:
    wait_until_deleted(api, WaitTarget(list_path, name, name), 60)


def test_resourceop_job(project: Project, api_client: client.ApiClient, namespace: str) -> None:
    result, logs = project.example("kfp_resourceop_job.py")
    assert result["status"] == "completed", logs[-4000:]
    assert result["job"].startswith("resourceop-basic-job-")
    assert result["succeeded"] == 1 and result["namespace"] == namespace
    job = rest.request(api_client, "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{result['job']}")
    assert job["status"]["succeeded"] == 1
    assert f"Job {result['job']} succeeded=1" in logs


def test_volumeop_sequential(project: Project, api_client: client.ApiClient, namespace: str) -> None:
    result, logs = project.example("kfp_volumeop_sequential.py")
    assert result["status"] == "completed", logs[-4000:]
    assert result["cat"] == "1\n1\n"
    assert result["size"]
    _gone(api_client, f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", result["pvc"])
    assert (DRIVER, "ProvisioningSucceeded") in _storage_events(api_client, namespace)  # csi-provisioner


def test_volume_snapshots(project: Project, api_client: client.ApiClient, namespace: str) -> None:
    result, logs = project.example("kfp_volume_snapshots.py")
    assert result["status"] == "completed", logs[-4000:]
    text = "hello from the KFP volume snapshot sample\n"
    assert result["output"] == text * 2
    assert result["restored_files"] == ["step1/file1.gz", "step2/file1", "step3/file3"]
    assert all(result["restore_sizes"]) and result["restored_size"]
    for name in result["snapshots"]:
        _gone(api_client, f"/apis/snapshot.storage.k8s.io/v1/namespaces/{namespace}/volumesnapshots", name)
    events = _storage_events(api_client, namespace)
    assert (DRIVER, "ProvisioningSucceeded") in events  # csi-provisioner, also for the restore
    # snapshot-controller reports the snapshot ready once csi-snapshotter has cut it through the driver
    assert {("snapshot-controller", "SnapshotCreated"), ("snapshot-controller", "SnapshotReady")} <= events


def test_flip_coin_conditions(project: Project) -> None:
    """KFP's flip-coin conditions: CEL steps branch a dynamic pipeline; a step after a skipped branch is skipped."""
    report, logs = project.example("kfp_flip_coin_conditions.py", "--coin", "heads", "tails")
    for entry, taken, other, threshold in ((report[0], "head", "tail", 5), (report[1], "tail", "head", 15)):
        assert entry["status"] == "completed", logs[-4000:]
        ran, outputs = set(entry["ran"]), entry["outputs"]
        assert outputs["flip_coin"] == ("heads" if taken == "head" else "tails")
        assert outputs[f"condition_{taken}s"] is True and outputs[f"condition_{other}s"] is False
        number = outputs[f"random_num_{taken}"]
        above = number > threshold
        assert outputs[f"condition_{taken}_above"] is above and outputs[f"condition_{taken}_at_most"] is (not above)
        printed = f"print_{taken}_{'above' if above else 'at_most'}"
        assert outputs[printed] == f"{taken}s and {number} {'>' if above else '<='} {threshold}!"
        # The skipped branch, its nested conditions and the step after both branches never ran.
        never = {f"random_num_{other}", f"condition_{other}_above", f"condition_{other}_at_most",
                 f"print_{other}_above", f"print_{other}_at_most", "print_after_both",
                 f"print_{taken}_{'at_most' if above else 'above'}"}
        assert not ran & never, ran & never
        assert entry["skipped"]["print_after_both"] == f"it depends on random_num_{other}, which was skipped"
    assert "Step print_after_both skipped" in logs


@pytest.fixture
def sum_controller(api_client: client.ApiClient, namespace: str) -> Iterator[Any]:
    yield from custom_task_world(api_client, namespace)


def test_custom_task_example(project: Project, api_client: client.ApiClient, namespace: str, sum_controller: Any) -> None:
    """Two Tekton custom tasks (inline taskSpec, then taskRef), the second fed the first one's result."""
    result, logs = project.example("tekton_custom_task.py", "--a", "2", "--b", "3", "--factor", "4")
    assert result["status"] == "completed", logs[-4000:]
    assert (result["sum"], result["product"]) == ("5", "20")
    assert result["report"] == "sum 5, product 20" and result["namespace"] == namespace
    assert all(name in sum_controller.seen_unknown for name in result["runs"])  # Unknown first, then True
    for name in result["runs"]:  # the run-end hook deleted the runs
        _gone(api_client, f"/apis/tekton.dev/v1beta1/namespaces/{namespace}/customruns", name)


def test_runtime_arguments(project: Project, api_client: client.ApiClient, namespace: str) -> None:
    """KFP's PipelineParams: size from an upstream step, classes and annotations from pipeline parameters,
    manifest fields from upstream outputs."""
    result, logs = project.example("kfp_runtime_arguments.py")
    assert result["status"] == "completed", logs[-4000:]
    pvc = result["volume_manifest"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "64Mi"
    assert pvc["spec"]["storageClassName"] == "standard" and pvc["metadata"]["annotations"]["team"] == "ml"
    assert result["snapshot_class"] == "local-snapshots"
    config = result["config"]
    assert config["metadata"]["name"] == result["snapshot"]
    assert config["data"]["volume"] == result["volume"] and config["data"]["note"] == f"restore size {config['data']['size']}"
    _gone(api_client, f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", result["volume"])
    _gone(api_client, f"/api/v1/namespaces/{namespace}/configmaps", result["snapshot"])


def test_pipeline_conf_and_pipeline_volumes(project: Project, api_client: client.ApiClient, namespace: str) -> None:
    """KFP-Tekton's TektonPipelineConf as pipeline-level settings (security context, token automount, env,
    an existing claim and a per-run claim as workspaces) and KFP's PipelineVolume of any kind (#14 items 3, 5)."""
    core = client.CoreV1Api(api_client)
    core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "data-volume"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "conf"}, "data": {"greeting": "hello"}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "conf"}, "stringData": {"token": "s3cr3t"}})
    result, logs = project.example("tekton_pipeline_conf.py", "--claim", "data-volume", "--config-map", "conf", "--secret", "conf")
    assert result["status"] == "completed", logs[-4000:]
    report = result["report"]
    for seen in (report["writer"], report, report["final"]):  # every step got the pipeline's configuration
        assert (seen["env"], seen["uid"], seen["group"]) == ("VALUE", 0, True), seen
    assert report["writer"]["token"] is False and report["token"] is False  # automount off for the pipeline ...
    assert report["final"]["token"] is True  # ... and on again for the one step that asks
    assert report["file1"] == "1\n" and report["in_writable"] is False  # the volume step's claim at a sub-path, read-only
    assert (report["greeting"], report["token_file"], report["scratch_writable"]) == ("hello", "s3cr3t", True)
    assert report["marker"] == "written by writer\n"  # the existing claim, at artifact_data/<run> in both steps
    assert report["shared"] == "shared within the run\n" and report["template_writable"] is False
    from k8s_step_operator.mounts import run_claim_name

    claim = run_claim_name(result["run_name"], result["run_id"], "new-ws-template")
    assert f"created claim {namespace}/{claim} for workspace `new-ws-template`" in logs
    cleanup = [line for line in logs.splitlines() if "clean-up" in line or "claim" in line]
    assert any(f"PersistentVolumeClaim {namespace}/{claim}" in line for line in cleanup), "\n".join(cleanup)
    _gone(api_client, f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", claim)  # the run-end hook deleted it
    _gone(api_client, f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", report["writer"]["pvc"])
    assert core.read_namespaced_persistent_volume_claim("data-volume", namespace).metadata.deletion_timestamp is None

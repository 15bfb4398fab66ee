"""Drills with real ZenML pipelines, each in a subprocess with its own ZenML state:
the orchestrator process dies mid-step and a new one finds the pod by its labels and
completes the run; ZenML secret values never reach a pod spec, an event or a log line."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from k8sso_localcluster.nodes import processes_mentioning
from kubernetes import client

from k8s_step_operator.manifest import LABEL_STEP

from ..zenml_support import BIN, register_k8s_stack, zenml_env
from .conftest import delete_namespace, make_namespace, managed_objects, settle, wait_until

pytestmark = pytest.mark.cluster

HERE = Path(__file__).resolve().parent
OPERATOR = "k8s-drill"


@dataclass
class Project:
    root: Path
    env: dict[str, str]
    namespace: str

    def run(self, argv: list[str], timeout: float = 300, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(argv, cwd=self.root, env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def zenml(self, *args: str) -> subprocess.CompletedProcess:
        return self.run([str(BIN / "zenml"), *args], timeout=180)

    def script(self, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return self.run([sys.executable, "drill_pipelines.py", *args], env=env, check=check)

    def start(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "drill_pipelines.py", *args], cwd=self.root,
                                env={**self.env, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, local_cluster: Any, api_client: client.ApiClient) -> Iterator[Project]:
    namespace = make_namespace(api_client, "d-zenml")
    root = tmp_path_factory.mktemp("zenml-drills")
    shutil.copy(HERE / "drill_pipelines.py", root / "drill_pipelines.py")
    proj = Project(root, zenml_env(root, OPERATOR), namespace)
    register_k8s_stack(proj.zenml, OPERATOR, namespace, local_cluster.kubeconfig, "drill-stack", 120)
    try:
        yield proj
    finally:
        delete_namespace(api_client, namespace)


def _pods(api: client.ApiClient, namespace: str, step: str) -> list:
    return client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"{LABEL_STEP}={step}").items


def test_orchestrator_dies_mid_step_and_a_new_one_completes_the_run(project: Project, api_client: client.ApiClient) -> None:
    # the step's pod sees the ZenML config directory (local=True mounts it), not the rest of this machine
    flag = Path(project.env["ZENML_CONFIG_PATH"]) / f"flag-{uuid.uuid4().hex[:6]}"
    run_name = f"drill-orphan-{uuid.uuid4().hex[:8]}"
    orchestrator = project.start("slow", str(flag), run_name)
    try:
        def running_pod() -> Any:
            for pod in _pods(api_client, project.namespace, "slow"):
                for cs in pod.status.container_statuses or []:
                    if cs.state.running:
                        return pod
            assert orchestrator.poll() is None, orchestrator.stdout.read()
            return None

        pod = wait_until(running_pod, 180, "the slow step's pod running")
        os.killpg(orchestrator.pid, signal.SIGKILL)  # the orchestrator dies; its pod does not
        orchestrator.wait(30)
    finally:
        if orchestrator.poll() is None:
            os.killpg(orchestrator.pid, signal.SIGKILL)
            orchestrator.wait(30)
    name, job = pod.metadata.name, pod.metadata.labels["batch.kubernetes.io/job-name"]
    assert [p.metadata.name for p in _pods(api_client, project.namespace, "slow")] == [name]
    # its Secret: deleted by the orchestrator once the pod had read it, unless the kill came first
    assert set(managed_objects(api_client, project.namespace)["secrets"]) <= {f"{job}-env"}

    asked = project.script("status", run_name)  # a new process, which never submitted anything
    assert "STEP-STATUS running" in asked.stdout, asked.stdout + asked.stderr

    flag.write_text("go")
    resumed = project.script("resume", run_name)
    output = resumed.stdout + resumed.stderr
    assert "STEP-STATUS completed" in output, output
    assert "RUN-STATUS completed" in output, output
    assert "[slow] slow step done" in output  # its logs, found through the pod's labels too
    settle(api_client, project.namespace)


def test_orchestrator_killed_mid_step_leaves_nothing_after_the_ttl(project: Project, api_client: client.ApiClient) -> None:
    """Nothing of ours needs to run for the clean-up: the Job's TTL, then garbage collection."""
    flag = Path(project.env["ZENML_CONFIG_PATH"]) / f"flag-{uuid.uuid4().hex[:6]}"
    run_name = f"drill-ttl-{uuid.uuid4().hex[:8]}"
    orchestrator = project.start("slow", str(flag), run_name, env={"DRILL_TTL": "5"})
    try:
        pod = wait_until(
            lambda: next((p for p in _pods(api_client, project.namespace, "slow")
                          if p.metadata.labels.get("run_name") == run_name and p.status.phase == "Running"), None),
            180, "the slow step's pod running",
        )
        os.killpg(orchestrator.pid, signal.SIGKILL)
        orchestrator.wait(30)
    finally:
        if orchestrator.poll() is None:
            os.killpg(orchestrator.pid, signal.SIGKILL)
            orchestrator.wait(30)
    assert processes_mentioning(run_name) == [], "a process of ours outlived the orchestrator"
    job = pod.metadata.labels["batch.kubernetes.io/job-name"]
    left = managed_objects(api_client, project.namespace)
    assert left["jobs"] == [job]  # the orchestrator never cleaned up
    assert set(left["secrets"]) <= {f"{job}-env"}  # the Secret, unless it was deleted once the pod had read it

    flag.write_text("go")  # the step ends on its own, with no orchestrator to see it
    finished = wait_until(
        lambda: (client.BatchV1Api(api_client).read_namespaced_job(job, project.namespace).status.completion_time),
        120, "the orphaned step's Job complete",
    )
    wait_until(
        lambda: managed_objects(api_client, project.namespace) == {"jobs": [], "pods": [], "secrets": []},
        90, "the TTL controller and garbage collection removing the Job, its pod and its Secret",
    )
    gone_after = (dt.datetime.now(dt.timezone.utc) - finished).total_seconds()
    assert gone_after >= 5, f"removed {gone_after:.1f}s after the Job finished, before its 5 s TTL"
    assert processes_mentioning(run_name) == []


def test_zenml_secret_values_never_reach_pod_specs_events_or_logs(project: Project, api_client: client.ApiClient) -> None:
    secret_token = f"zsv-{uuid.uuid4().hex}"
    env_token = f"zev-{uuid.uuid4().hex}"
    project.zenml("secret", "create", "drill-secret", f"--DRILL_SECRET_TOKEN={secret_token}")
    run_name = f"drill-secret-{uuid.uuid4().hex[:8]}"
    proc = project.script("secretive", run_name, env={"DRILL_ENV_TOKEN": env_token}, check=False)
    output = proc.stdout + proc.stderr
    assert "RUN-STATUS completed" in output, output

    # the values did reach the step (so the search below is meaningful) ...
    for name, value in (("DRILL_SECRET_TOKEN", secret_token), ("DRILL_ENV_TOKEN", env_token)):
        assert f"[secretive] sha256 {name} {hashlib.sha256(value.encode()).hexdigest()}" in output, output

    # ... but never appear in a pod spec, an event or a log line
    core = client.CoreV1Api(api_client)
    [pod] = _pods(api_client, project.namespace, "secretive")  # kept: cleanup_policy keep
    pods = json.dumps(api_client.sanitize_for_serialization(core.list_namespaced_pod(project.namespace)))
    events = json.dumps(api_client.sanitize_for_serialization(core.list_namespaced_event(project.namespace)))
    pod_log = core.read_namespaced_pod_log(pod.metadata.name, project.namespace, container="main",
                                           _preload_content=False).data.decode()
    assert "sha256 DRILL_SECRET_TOKEN" in pod_log and json.loads(events)["items"]
    for where, text in (("pod specs", pods), ("events", events), ("pod log", pod_log), ("orchestrator output", output)):
        for value in (secret_token, env_token):
            assert value not in text, f"a secret value leaked into the {where}"
    # the env Secret is gone too (the kept pod stays until its Job's TTL)
    wait_until(lambda: managed_objects(api_client, project.namespace)["secrets"] == [], 30, "the env Secret deleted")
    client.BatchV1Api(api_client).delete_namespaced_job(
        pod.metadata.labels["batch.kubernetes.io/job-name"], project.namespace, propagation_policy="Background"
    )

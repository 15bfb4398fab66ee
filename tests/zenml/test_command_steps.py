"""ZenML's CommandStep on our operator, on one pod and on two pods that meet over TCP at ZenML's main
address; a failing pod fails the step at once and stops the other; a regular step on two pods is
refused; a resource pool's allocation reaches the pod. Real ZenML runs, on the local cluster's nodes."""

from __future__ import annotations

import re
import time

from kubernetes import client

from k8s_step_operator.manifest import LABEL_STEP

from .conftest import ZenMLProject
from .test_zenml_usage import pods, pods_after_deletion, secrets_of_operator


def test_command_steps_on_one_pod_and_on_two_that_rendezvous(zenml_project: ZenMLProject, api_client) -> None:
    proc = zenml_project.pipeline("command")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "RUN-STATUS completed" in output, output
    assert re.search(r"^\[single_command\] command step on \S*single-command-\S+$", output, re.M), output
    # both pods ran, each with its rank, and streamed its logs with a rank prefix
    [zero] = re.findall(r"^\[rendezvous/0\] rank 0 of 2 on (\S+), main (\S+):29500$", output, re.M)
    [one] = re.findall(r"^\[rendezvous/1\] rank 1 of 2 on (\S+), main (\S+):29500$", output, re.M)
    job = zero[1].split(".")[1]
    assert (zero[0], one[0]) == (f"{job}-0", f"{job}-1")  # stable hostnames: the Indexed Job's
    assert zero[1] == one[1] == f"{job}-0.{job}.{zenml_project.namespace}.svc"
    # they met through rank 0's DNS name and the headless Service
    assert "[rendezvous/0] rank 0 got 'hello from rank 1'" in output
    assert "[rendezvous/1] rank 1 got 'welcome'" in output
    # a succeeded command step leaves nothing: Job, pods, Secret and Service go together
    ns = zenml_project.namespace
    assert pods_after_deletion(api_client, ns, f"{LABEL_STEP}=rendezvous") == []
    assert secrets_of_operator(api_client, ns) == []
    services = client.CoreV1Api(api_client).list_namespaced_service(ns, label_selector=f"{LABEL_STEP}=rendezvous")
    deadline = time.monotonic() + 30
    while services.items and time.monotonic() < deadline:
        time.sleep(0.5)
        services = client.CoreV1Api(api_client).list_namespaced_service(ns, label_selector=f"{LABEL_STEP}=rendezvous")
    assert services.items == []


def test_a_failing_pod_fails_the_command_step_at_once_and_stops_the_other(
    zenml_project: ZenMLProject, api_client
) -> None:
    started = time.monotonic()
    proc = zenml_project.pipeline("fail-fast")
    took = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert took < 120, f"the step failed {took:.0f}s after the run started: rank 0 sleeps 600 s"
    # the reason names rank 1's pod and its exit, not rank 0's, which was stopped because of it
    reason = re.search(r"Failed to run step `fail_fast`: pod \S+/(\S+): (.*)$", output, re.M)
    assert reason, output
    assert re.fullmatch(r"\S+-1-\w+", reason[1]) and reason[2] == "container 'main' terminated: Error (exit code 3)"
    assert "[fail_fast/0] rank 0 started" in output and "[fail_fast/1] rank 1 started" in output
    # rank 0 does not run on: the Job controller stops it (its grace period is 1 s)
    deadline = time.monotonic() + 60
    while any(p.status.phase == "Running" for p in pods(api_client, zenml_project.namespace, f"{LABEL_STEP}=fail_fast")):
        assert time.monotonic() < deadline, "rank 0 still runs a minute after the step failed"
        time.sleep(0.5)
    assert secrets_of_operator(api_client, zenml_project.namespace) == []


def test_a_regular_step_on_two_pods_is_refused_with_zenmls_reason(zenml_project: ZenMLProject, api_client) -> None:
    proc = zenml_project.pipeline("multi-pod-regular")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "step `two_pod_regular`: pod_count: requests 2 pods but is not a command step" in output, output
    assert pods(api_client, zenml_project.namespace, f"{LABEL_STEP}=two_pod_regular") == []  # nothing created


def test_a_resource_pools_allocation_sets_the_pods_resources(zenml_project: ZenMLProject, api_client) -> None:
    proc = zenml_project.pipeline("pool")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "RUN-STATUS completed" in output, output
    [pod] = pods(api_client, zenml_project.namespace, f"{LABEL_STEP}=pooled")  # kept: cleanup_policy keep
    granted = {"cpu": "500m", "memory": "300Mi"}  # ResourceSettings(cpu_count=0.5, memory="300MiB")
    main = pod.spec.containers[0]
    assert (main.resources.requests, main.resources.limits) == (granted, granted)
    assert pod.metadata.labels["granted-by"] == "test-pool"  # the pool's component-setting override
    client.BatchV1Api(api_client).delete_namespaced_job(
        pod.metadata.labels["batch.kubernetes.io/job-name"], zenml_project.namespace, propagation_policy="Background"
    )

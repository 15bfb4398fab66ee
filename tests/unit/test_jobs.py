"""The Job, Service and ownership built around the step pod (pure)."""

import pytest

from k8s_step_operator import jobs
from k8s_step_operator.manifest import StepIdentity, build_pod
from k8s_step_operator.settings import K8sStepOperatorSettings
from k8s_step_operator.validation import validate_dns1123_label

RUN_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def _pod():
    identity = StepIdentity("run-1", "training", "trainer", RUN_ID, "r1", "p1")
    return build_pod(K8sStepOperatorSettings(), identity, "img:1", ["python", "-m", "x"], "ml", "train-env")


def test_single_pod_job_runs_at_once_is_ttl_bound_and_fails_at_the_first_failure():
    pod = _pod()
    job = jobs.build_job(pod, "train", ttl_seconds_after_finished=86400, annotations={"zenml.io/step-name": "trainer"})
    spec = job["spec"]
    assert (job["apiVersion"], job["kind"], job["metadata"]["namespace"]) == ("batch/v1", "Job", "ml")
    assert spec["suspend"] is False and spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] == 86400
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "NotIn", "values": [0]}}
    assert rules[1]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    assert "completionMode" not in spec and "subdomain" not in spec["template"]["spec"]
    assert spec["template"]["spec"] == pod["spec"]
    assert spec["template"]["metadata"]["labels"] == pod["metadata"]["labels"] == job["metadata"]["labels"]
    assert job["metadata"]["annotations"]["zenml.io/step-name"] == "trainer"
    assert "zenml.io/step-name" not in spec["template"]["metadata"]["annotations"]
    assert "ttlSecondsAfterFinished" not in jobs.build_job(pod, "t", ttl_seconds_after_finished=None)["spec"]


def test_multi_pod_job_is_indexed_with_a_rank_and_a_headless_service():
    job = jobs.build_job(_pod(), "train", ttl_seconds_after_finished=60, pod_count=3)
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 3)
    assert spec["template"]["spec"]["subdomain"] == "train"
    main = spec["template"]["spec"]["containers"][0]
    assert main["env"][-1] == {
        "name": "ZENML_KUBERNETES_POD_RANK",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}},
    }
    created = {**job, "metadata": {**job["metadata"], "uid": "u-1"}}
    service = jobs.build_headless_service(created)
    assert service["metadata"]["name"] == "train" and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": "train"}
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job", "name": "train", "uid": "u-1"}]
    assert jobs.multi_pod_environment("train", "ml", 3) == {
        "ZENML_KUBERNETES_POD_COUNT": "3",
        "ZENML_KUBERNETES_MAIN_ADDRESS": "train-0.train.ml.svc",
        "ZENML_KUBERNETES_MAIN_PORT": "29500",
    }


def test_queue_name_labels_the_job_for_kueue():
    job = jobs.build_job(_pod(), "train", ttl_seconds_after_finished=60, queue_name="gpu-queue")
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert job["spec"]["suspend"] is True


@pytest.mark.parametrize("pod_count", [2, 10, 1000])
def test_multi_pod_job_names_leave_room_for_the_index_and_start_with_a_letter(pod_count):
    name = jobs.job_name("9team", "p" * 80, "s", RUN_ID, pod_count)
    hostname = f"{name}-{pod_count - 1}"
    assert name[0].isalpha() and len(hostname) <= 63
    validate_dns1123_label(hostname, "hostname")
    assert jobs.job_name(None, "p", "s", RUN_ID) == "p-s-0f8fad5bd9"


def test_secret_owned_by_the_job():
    secret = {"metadata": {"name": "t-env", "labels": {"a": "b"}}}
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "t", "uid": "1234"}}
    owned = jobs.owned_by(secret, job)
    assert owned["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job", "name": "t", "uid": "1234"}]
    assert "ownerReferences" not in secret["metadata"]  # the input is not changed


def test_rank_of():
    assert jobs.rank_of({"metadata": {"labels": {"batch.kubernetes.io/job-completion-index": "2"}}}) == 2
    assert jobs.rank_of({"metadata": {}}) is None

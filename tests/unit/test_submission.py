"""The pure core of a submission: the objects, the requests that follow the Job, finding a Job again,
the verdict (a container waiting for the step's own Secret is not failed) and what clean-up deletes."""

from __future__ import annotations

import datetime as dt

import pytest

from k8s_step_operator import manifest, pod_status, submission
from k8s_step_operator.settings import K8sStepOperatorSettings

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)
IDENTITY = manifest.StepIdentity("run", "pipe", "train", "0f8fad5b-d9cb-469f-a165-70867728950e")


def _objects(step_run_id: str = "", **settings) -> submission.StepObjects:
    identity = manifest.StepIdentity("run", "pipe", "train", step_run_id) if step_run_id else IDENTITY
    return submission.build_objects(
        K8sStepOperatorSettings(**settings), identity, namespace="ml", image="img:1", command=["python", "x.py"],
        environment={"ZENML_STORE_API_KEY": "s3cr3t"}, volumes=[], user=submission.User("u-1", 1000, 100),
        operator_id="op-1", host_paths=["/data/zen"],
    )


def test_objects_keep_the_environment_out_of_the_pod_and_job() -> None:
    objects = _objects()
    assert objects.secret["metadata"]["name"] == f"{objects.name}-env"
    assert objects.secret["stringData"][f"{objects.name}.ZENML_STORE_API_KEY"] == "s3cr3t"
    assert "s3cr3t" not in str(objects.job) and "s3cr3t" not in str(objects.pod)
    env = objects.job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "ZENML_STORE_API_KEY", "valueFrom": {"secretKeyRef": {
        "name": f"{objects.name}-env", "key": f"{objects.name}.ZENML_STORE_API_KEY"}}} in env
    assert objects.job["spec"]["suspend"] is False
    assert objects.job["metadata"]["annotations"][manifest.ANNOTATION_ZENML_STEP_OPERATOR] == "op-1"
    assert objects.pod["metadata"]["annotations"][manifest.ANNOTATION_ZENML_USER_ID] == "u-1"
    assert objects.pod["spec"]["securityContext"]["runAsUser"] == 1000
    mounts = objects.pod["spec"]["containers"][0]["volumeMounts"]
    assert [m["mountPath"] for m in mounts] == ["/data/zen"]


def test_several_pods_get_zenmls_multi_pod_environment_in_the_secret() -> None:
    objects = _objects(pod_count=3)
    assert objects.secret["stringData"][f"{objects.name}.ZENML_KUBERNETES_POD_COUNT"] == "3"
    assert objects.job["spec"]["completions"] == 3


def test_the_service_follows_the_created_job_owned_by_it() -> None:
    objects = _objects(pod_count=2)
    created = {**objects.job, "metadata": {**objects.job["metadata"], "uid": "job-uid"}}
    [(kind, path, body)] = submission.dependents(created, pod_count=2)
    assert (kind, path) == ("Service", "/api/v1/namespaces/ml/services")
    assert body["metadata"]["ownerReferences"][0]["uid"] == "job-uid"
    assert submission.dependents(created, pod_count=1) == []


def _created(objects: submission.StepObjects, uid: str) -> dict:
    return {**objects.job, "metadata": {**objects.job["metadata"], "uid": uid}}


def test_a_burst_shares_one_secret_owned_by_all_its_jobs_each_step_reading_its_own_keys() -> None:
    first, second = _objects(), _objects(step_run_id="7c9e6679-7425-40de-944b-e07fc1f90ae7")
    assert first.name != second.name
    second = submission.with_env_secret(second, first.secret["metadata"]["name"])
    # the second step's Job was created first: the Secret still bears the name the pods refer to
    kind, path, body = submission.batch_secret(
        first.secret["metadata"]["name"], [second.secret, first.secret], [_created(second, "u2"), _created(first, "u1")]
    )
    assert (kind, path, body["metadata"]["name"]) == ("Secret", "/api/v1/namespaces/ml/secrets", f"{first.name}-env")
    assert [ref["uid"] for ref in body["metadata"]["ownerReferences"]] == ["u2", "u1"]
    assert body["stringData"] == {f"{first.name}.ZENML_STORE_API_KEY": "s3cr3t", f"{second.name}.ZENML_STORE_API_KEY": "s3cr3t"}
    [ref] = [v["valueFrom"]["secretKeyRef"] for v in second.job["spec"]["template"]["spec"]["containers"][0]["env"]
             if "valueFrom" in v]
    assert ref == {"name": f"{first.name}-env", "key": f"{second.name}.ZENML_STORE_API_KEY"}
    assert submission.with_env_secret(first, f"{first.name}-env") is first  # its own: unchanged


def _main_state(state: dict) -> dict:
    return {"metadata": {"name": "p"}, "status": {"phase": "Running", "containerStatuses": [{"name": "main", "state": state}]}}


@pytest.mark.parametrize(
    "pods, pod_count, read",
    [
        ([], 1, False),  # no pod yet
        ([(_main_state({"waiting": {"reason": "ContainerCreating"}}), False)], 1, False),
        ([(_main_state({"waiting": {"reason": "CreateContainerConfigError"}}), False)], 1, False),  # its Secret late
        ([(_main_state({"running": {}}), False)], 1, True),
        ([(_main_state({"terminated": {"exitCode": 1}}), False)], 1, True),
        ([(_main_state({"running": {}}), False)], 2, False),  # the second pod not created yet
        ([(_main_state({"running": {}}), False), (_main_state({"waiting": {}}), True)], 2, True),  # one gone
    ],
)
def test_the_environment_is_read_once_every_pod_started_its_step_container(pods, pod_count, read) -> None:
    assert submission.env_read(pods, pod_count) is read


def test_dry_runs_cover_pod_job_secret_and_each_run_claim() -> None:
    objects = _objects()
    claims = {"ws": {"kind": "PersistentVolumeClaim", "metadata": {"name": "c"}}}
    kinds = [kind for kind, _, _ in submission.dry_run_requests(objects, K8sStepOperatorSettings(), claims)]
    assert kinds == ["Pod", "Job", "Secret", "PersistentVolumeClaim"]


def test_a_job_found_by_label_becomes_a_submission() -> None:
    job = {"metadata": {"name": "j", "namespace": "ml", "creationTimestamp": "2026-11-29T11:00:00Z",
                        "annotations": {manifest.ANNOTATION_STEP: "trainer"}}}
    sub = submission.from_job(job, "fallback", K8sStepOperatorSettings(), NOW)
    assert (sub.namespace, sub.job, sub.step, sub.secret) == ("ml", "j", "trainer", "j-env")
    ref = {"name": "A", "valueFrom": {"secretKeyRef": {"name": "first-env", "key": "j.A"}}}
    job["spec"] = {"template": {"spec": {"containers": [{"name": "main", "env": [ref]}]}}}
    assert submission.from_job(job, "fallback", K8sStepOperatorSettings(), NOW).secret == "first-env"  # a burst's
    assert sub.submitted == dt.datetime(2026, 11, 29, 11, 0, tzinfo=dt.timezone.utc)
    assert submission.job_selector("abc").endswith(f"{manifest.LABEL_STEP_RUN_ID}=abc")


def _waiting(message: str) -> dict:
    just_now = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {"name": "j-x", "creationTimestamp": just_now},
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Pending", "containerStatuses": [
            {"name": "main", "state": {"waiting": {"reason": "CreateContainerConfigError", "message": message}}},
        ]},
    }


def test_a_container_waiting_for_the_steps_own_secret_is_not_failed() -> None:
    sub = submission.Submission("ml", "j", "s", K8sStepOperatorSettings(), NOW)
    verdict = submission.judge(sub, [(_waiting('secret "j-env" not found'), False)], [])
    assert verdict.phase is pod_status.Phase.PENDING


def test_a_kubelet_whose_secret_cache_has_not_synced_yet_is_waited_for() -> None:
    sub = submission.Submission("ml", "j", "s", K8sStepOperatorSettings(), NOW)
    message = "failed to sync secret cache: timed out waiting for the condition"
    assert submission.judge(sub, [(_waiting(message), False)], []).phase is pod_status.Phase.PENDING


def test_a_container_missing_any_other_secret_fails_at_once() -> None:
    sub = submission.Submission("ml", "j", "s", K8sStepOperatorSettings(), NOW)
    verdict = submission.judge(sub, [(_waiting('secret "db-password" not found'), False)], [])
    assert verdict.phase is pod_status.Phase.FAILED
    assert 'secret "db-password" not found' in verdict.reason


@pytest.mark.parametrize(
    "policy, phase, pod_phases, keep",
    [
        ("delete-succeeded", pod_status.Phase.SUCCEEDED, ["Succeeded"], False),
        ("delete-succeeded", pod_status.Phase.FAILED, ["Failed"], True),
        ("delete-succeeded", pod_status.Phase.FAILED, ["Pending"], False),
        ("keep", pod_status.Phase.SUCCEEDED, ["Succeeded"], True),
        ("delete", pod_status.Phase.FAILED, ["Failed"], False),
    ],
)
def test_clean_up_removes_the_job_or_only_the_secret(policy, phase, pod_phases, keep) -> None:
    sub = submission.Submission("ml", "j", "s", K8sStepOperatorSettings(cleanup_policy=policy), NOW,
                                verdict=pod_status.Verdict(phase))
    pods = [({"metadata": {"name": f"j-{i}"}, "status": {"phase": p}}, False) for i, p in enumerate(pod_phases)]
    assert submission.keeps_pods(sub, pods) is keep
    expected = "/api/v1/namespaces/ml/secrets/j-env" if keep else "/apis/batch/v1/namespaces/ml/jobs/j"
    assert submission.removal_path(sub, keep) == expected


def test_next_deadline_is_the_schedule_budget_without_pods_and_none_for_kueue() -> None:
    sub = submission.Submission("ml", "j", "s", K8sStepOperatorSettings(schedule_timeout=30), NOW)
    assert submission.next_deadline(sub, []) == NOW + dt.timedelta(seconds=30)
    queued = submission.Submission("ml", "j", "s", K8sStepOperatorSettings(queue_name="q"), NOW)
    assert submission.next_deadline(queued, []) is None


def test_unknown_settings_are_named_with_a_hint() -> None:
    settings = K8sStepOperatorSettings.model_validate({"stream_log": True})
    text = submission.unknown_settings(settings, ["stream_logs", "namespace"])
    assert text is not None and "'stream_log' (did you mean 'stream_logs'?)" in text
    assert submission.unknown_settings(K8sStepOperatorSettings(), ["stream_logs"]) is None


@pytest.mark.parametrize(
    "pods, finished, due",
    [
        ([], False, True),  # no pod yet (the Job's pod refused, say): its events tell why
        ([({"status": {"phase": "Pending"}}, False)], False, True),  # a mount, a pull, a sandbox
        ([({"status": {"phase": "Running"}}, False), ({"status": {}}, False)], False, True),  # one still pending
        ([({"status": {"phase": "Running"}}, False)], False, False),  # started as it should: no events needed
        ([({"status": {"phase": "Succeeded"}}, False), ({"status": {"phase": "Pending"}}, True)], False, False),
        ([({"status": {"phase": "Pending"}}, False)], True, False),  # over
    ],
)
def test_events_are_due_for_a_step_slow_to_start(pods, finished, due) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    sub = submission.Submission("ns", "job", "train", K8sStepOperatorSettings(), now)
    if finished:
        sub.verdict = pod_status.Verdict(pod_status.Phase.FAILED, "x")
    assert submission.events_due(sub, pods) == (now + submission.EVENTS_AFTER if due else None)

"""Which requests submit sends (a dry run, the suspended Job, its Secret, the resume; on a refusal half-way
the Job is deleted again), and which DELETE clean-up and cancel send. The Job owns its pods, Secret and Service, so removing a
step is one DELETE of the Job (garbage collection takes the rest); keeping the pods for debugging is
one DELETE of the Secret (the Job's TTL removes the pods later)."""

import datetime as dt

import pytest

from k8s_step_operator.pod_status import Phase, Verdict
from k8s_step_operator.settings import K8sStepOperatorSettings
from k8s_step_operator.step_operator import K8sStepOperator, Submission


@pytest.fixture
def deletes(mocker):
    calls = []

    def record(self, settings, path, propagation="Background"):
        calls.append((path.split("/ns/")[1], propagation))

    mocker.patch.object(K8sStepOperator, "_delete", record)
    return calls


def sub(policy, phase, **settings):
    settings = K8sStepOperatorSettings(cleanup_policy=policy, **settings)
    return Submission("ns", "j", "s", settings, dt.datetime.now(dt.timezone.utc), verdict=Verdict(phase))


def operator_with(mocker, submission, pod_phases):
    watch = mocker.Mock()
    watch.select.return_value = [({"metadata": {"name": f"j-{i}"}, "status": {"phase": p}}, False) for i, p in enumerate(pod_phases)]
    mocker.patch.object(K8sStepOperator, "_watch", return_value=watch)
    mocker.patch.object(K8sStepOperator, "_locate", return_value=submission)
    operator = K8sStepOperator.__new__(K8sStepOperator)
    operator._known = {}
    return operator


JOB = ("jobs/j", "Background")  # the Job goes, and garbage collection takes its pods, Secret, Service
SECRET = ("secrets/j-env", "Background")  # only the Secret goes; the pods stay until the Job's TTL


@pytest.mark.parametrize(
    "policy, phase, pod_phases, expected",
    [
        ("delete-succeeded", Phase.SUCCEEDED, ["Succeeded"], [JOB]),
        ("delete-succeeded", Phase.FAILED, ["Failed"], [SECRET]),
        ("keep", Phase.SUCCEEDED, ["Succeeded"], [SECRET]),
        ("delete", Phase.FAILED, ["Failed"], [JOB]),
        # failed fast (image pull, startup timeout): keeping it would leave it Pending until the TTL
        ("delete-succeeded", Phase.FAILED, ["Pending"], [JOB]),
        ("delete-succeeded", Phase.FAILED, [], [JOB]),
        # one pod of two failed after running: worth keeping
        ("delete-succeeded", Phase.FAILED, ["Failed", "Pending"], [SECRET]),
    ],
)
def test_cleanup_deletes(mocker, deletes, policy, phase, pod_phases, expected):
    operator = operator_with(mocker, sub(policy, phase), pod_phases)
    operator.cleanup_step_submission(mocker.Mock(id="run-1"))
    assert deletes == expected


def test_cancel_deletes_the_job(mocker, deletes):
    operator = operator_with(mocker, sub("keep", Phase.RUNNING), ["Running"])
    operator.cancel(mocker.Mock(id="run-1"))
    assert deletes == [JOB]


# ------------------------------------------------------------------ submit's requests
@pytest.fixture
def sent(monkeypatch):
    """``kube.rest.request`` answered like an API server; ``fail`` names a path suffix to refuse."""
    from kubernetes.client.exceptions import ApiException

    from k8s_step_operator.kube import rest

    calls, fail = [], set()

    def fake(api, method, path, query=None, body=None, **kwargs):
        calls.append((method, path.split("/ns/")[1], dict(query or {})))
        if any(path.endswith(f) and method == "POST" for f in fail):
            raise ApiException(status=422, reason="Unprocessable Entity")
        if method == "POST":
            return {**body, "metadata": {**body["metadata"], "uid": "u-1"}}
        return {**(body or {}), "metadata": {"name": path.rsplit("/", 1)[1]}}

    monkeypatch.setattr(rest, "request", fake)
    return calls, fail


def _job(pod_count=1, **settings):
    from k8s_step_operator import jobs, manifest

    settings = K8sStepOperatorSettings(pod_count=pod_count, **settings)
    identity = manifest.StepIdentity("run", "pipe", "train", "0f8fad5b-d9cb-469f-a165-70867728950e")
    pod = manifest.build_pod(settings, identity, "img", ["true"], "ns", "train-env")
    job = jobs.build_job(pod, "train", ttl_seconds_after_finished=60, pod_count=pod_count, queue_name=settings.queue_name)
    return settings, pod, job, manifest.build_env_secret("train-env", "ns", identity, {"A": "1"})


def _operator(mocker):
    mocker.patch.object(K8sStepOperator, "api", new=object())  # rest.request is faked: any client does
    return K8sStepOperator.__new__(K8sStepOperator)


def test_submit_is_a_dry_run_then_the_suspended_job_its_secret_and_the_resume(sent, mocker):
    calls, _ = sent
    _operator(mocker).create_job(*_job())
    assert calls == [
        ("POST", "pods", {"dryRun": "All"}),
        ("POST", "jobs", {}),
        ("POST", "secrets", {}),
        ("PATCH", "jobs/train", {}),
    ]


def test_several_pods_add_the_service_and_a_queue_leaves_the_job_to_kueue(sent, mocker):
    calls, _ = sent
    _operator(mocker).create_job(*_job(pod_count=2, queue_name="gpus"))
    assert [(m, p) for m, p, _ in calls] == [("POST", "pods"), ("POST", "jobs"), ("POST", "secrets"), ("POST", "services")]


def test_a_refused_secret_deletes_the_job_again(sent, mocker):
    from kubernetes.client.exceptions import ApiException

    calls, fail = sent
    fail.add("/secrets")
    with pytest.raises(ApiException):
        _operator(mocker).create_job(*_job())
    assert [(m, p) for m, p, _ in calls][-1] == ("DELETE", "jobs/train")  # garbage collection takes the rest


def test_a_refused_dry_run_creates_nothing(sent, mocker):
    from kubernetes.client.exceptions import ApiException

    calls, fail = sent
    fail.add("/pods")
    with pytest.raises(ValueError, match=r"^step `\S+`: the step's Pod") as refused:
        _operator(mocker).create_job(*_job())
    assert isinstance(refused.value.__cause__, ApiException)
    assert calls == [("POST", "pods", {"dryRun": "All"})]


def test_api_requests_time_out_after_30_s_unless_set():
    assert K8sStepOperator._timeout(K8sStepOperatorSettings()) == 30.0
    assert K8sStepOperator._timeout(K8sStepOperatorSettings(api_request_timeout=5)) == 5.0

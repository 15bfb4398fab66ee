"""Which DELETE clean-up and cancel send. The Job owns its pods, Secret and Service, so removing a
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
    return Submission("ns", "j", "j-env", "s", settings, dt.datetime.now(dt.timezone.utc), verdict=Verdict(phase))


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

"""Which DELETEs clean-up and cancel send. The Secret owns the Pod, so deleting an ended Pod is one
DELETE of the Secret (garbage collection takes the Pod); keeping the Pod orphans it; a grace period
or a Pod that is not owned needs an explicit DELETE of the Pod."""

import pytest

from k8s_step_operator.pod_status import Phase, Verdict
from k8s_step_operator.settings import K8sStepOperatorSettings
from k8s_step_operator.step_operator import K8sStepOperator, Submission


@pytest.fixture
def deletes(mocker):
    calls = []

    def record(self, settings, path, grace=None, propagation="Background"):
        calls.append((path.split("/ns/")[1], grace, propagation))

    mocker.patch.object(K8sStepOperator, "_delete", record)
    return calls


def sub(policy, phase, anchored=True, **settings):
    settings = K8sStepOperatorSettings(cleanup_policy=policy, **settings)
    return Submission("ns", "p", "p-env", "s", settings, verdict=Verdict(phase), anchored=anchored)


def operator_with(mocker, submission, pod_phase):
    watch = mocker.Mock()
    watch.lookup.return_value = ({"status": {"phase": pod_phase}}, False)
    mocker.patch.object(K8sStepOperator, "_watch", return_value=watch)
    mocker.patch.object(K8sStepOperator, "_locate", return_value=submission)
    operator = K8sStepOperator.__new__(K8sStepOperator)
    operator._known = {}
    return operator


GC = ("secrets/p-env", None, "Background")  # the Secret goes, and garbage collection takes its Pod
ORPHAN = ("secrets/p-env", None, "Orphan")  # the Secret goes, the Pod stays


@pytest.mark.parametrize(
    "policy, phase, pod_phase, anchored, expected",
    [
        ("delete-succeeded", Phase.SUCCEEDED, "Succeeded", True, [GC]),
        ("delete-succeeded", Phase.SUCCEEDED, "Succeeded", False, [("pods/p", None, "Background"), ORPHAN]),
        ("delete-succeeded", Phase.FAILED, "Failed", True, [ORPHAN]),
        ("keep", Phase.SUCCEEDED, "Succeeded", True, [ORPHAN]),
        ("delete", Phase.FAILED, "Failed", True, [GC]),
        # failed fast (image pull, startup timeout): keeping it would leave it Pending for ever
        ("delete-succeeded", Phase.FAILED, "Pending", True, [("pods/p", 0, "Background"), ORPHAN]),
    ],
)
def test_cleanup_deletes(mocker, deletes, policy, phase, pod_phase, anchored, expected):
    operator = operator_with(mocker, sub(policy, phase, anchored), pod_phase)
    operator.cleanup_step_submission(mocker.Mock(id="run-1"))
    assert deletes == expected


def test_cancel_deletes_the_pod_with_its_grace_period_then_the_secret(mocker, deletes):
    operator = operator_with(mocker, sub("keep", Phase.RUNNING, delete_grace_period_seconds=7), "Running")
    operator.cancel(mocker.Mock(id="run-1"))
    assert deletes == [("pods/p", 7, "Background"), ORPHAN]

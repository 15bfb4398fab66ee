"""Which DELETEs clean-up sends: the Secret is left to garbage collection only when the Pod owns it
and the Pod itself is deleted."""

from concurrent.futures import Future

import pytest

from k8s_step_operator.pod_status import Phase, Verdict
from k8s_step_operator.settings import K8sStepOperatorSettings
from k8s_step_operator.step_operator import K8sStepOperator, Submission


def done(value):
    future = Future()
    future.set_result(value)
    return future


def failed():
    future = Future()
    future.set_exception(RuntimeError("patch failed"))
    return future


@pytest.fixture
def deletes(mocker):
    calls = []
    mocker.patch.object(K8sStepOperator, "_delete", lambda self, settings, path, grace=None: calls.append(path))
    return calls


def sub(policy, phase, owned):
    settings = K8sStepOperatorSettings(cleanup_policy=policy)
    return Submission("ns", "p", "p-env", "s", settings, verdict=Verdict(phase), owned=owned)


PHASES = {Phase.SUCCEEDED: "Succeeded", Phase.FAILED: "Failed", Phase.RUNNING: "Running"}


def cached_pod(mocker, pod_phase):
    watch = mocker.Mock()
    watch.lookup.return_value = ({"status": {"phase": pod_phase}}, False)
    mocker.patch("k8s_step_operator.step_operator.PodWatch.shared", return_value=watch)
    mocker.patch.object(K8sStepOperator, "api", new=None)


@pytest.mark.parametrize(
    "policy, phase, owned, expected",
    [
        ("delete-succeeded", Phase.SUCCEEDED, done(True), ["pods/p"]),
        ("delete-succeeded", Phase.SUCCEEDED, done(False), ["pods/p", "secrets/p-env"]),
        ("delete-succeeded", Phase.SUCCEEDED, failed(), ["pods/p", "secrets/p-env"]),
        ("delete-succeeded", Phase.SUCCEEDED, None, ["pods/p", "secrets/p-env"]),
        ("delete-succeeded", Phase.FAILED, done(True), ["secrets/p-env"]),
        ("keep", Phase.SUCCEEDED, done(True), ["secrets/p-env"]),
        ("delete", Phase.FAILED, done(True), ["pods/p"]),
    ],
)
def test_cleanup_deletes(mocker, deletes, policy, phase, owned, expected):
    cached_pod(mocker, PHASES[phase])
    operator = K8sStepOperator.__new__(K8sStepOperator)
    operator._known = {}
    mocker.patch.object(K8sStepOperator, "_locate", return_value=sub(policy, phase, owned))
    operator.cleanup_step_submission(mocker.Mock(id="run-1"))
    assert [path.split("/ns/")[1] for path in deletes] == expected


def test_failed_while_pending_pod_is_deleted_not_kept(mocker, deletes):
    """Failed fast (image pull, startup timeout): keeping it would leave it Pending for ever."""
    cached_pod(mocker, "Pending")
    operator = K8sStepOperator.__new__(K8sStepOperator)
    operator._known = {}
    mocker.patch.object(K8sStepOperator, "_locate", return_value=sub("delete-succeeded", Phase.FAILED, done(True)))
    operator.cleanup_step_submission(mocker.Mock(id="run-1"))
    assert [path.split("/ns/")[1] for path in deletes] == ["pods/p"]


def test_cancel_deletes_the_pod_and_relies_on_ownership(mocker, deletes):
    operator = K8sStepOperator.__new__(K8sStepOperator)
    operator._known = {}
    mocker.patch.object(K8sStepOperator, "_locate", return_value=sub("keep", Phase.RUNNING, done(True)))
    operator.cancel(mocker.Mock(id="run-1"))
    assert [path.split("/ns/")[1] for path in deletes] == ["pods/p"]

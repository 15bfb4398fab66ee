"""Who reads which log: ``wait()`` reads a one-pod step's own log in its own thread (no thread per step),
threads follow every other container; a stream still open when the pods say the step is over is cut
and the rest read once (no cluster: the watch's reflectors are not started, the follower is faked)."""

from __future__ import annotations

import datetime as dt
import threading
from types import SimpleNamespace

import pytest

from k8s_step_operator.kube.logs import LogFollower
from k8s_step_operator.kube.podwatch import PodWatch
from k8s_step_operator.kube.reflector import Reflector
from k8s_step_operator.settings import K8sStepOperatorSettings
from k8s_step_operator.step_operator import K8sStepOperator
from k8s_step_operator.submission import Submission

JOB = "batch.kubernetes.io/job-name"
NOW = dt.datetime.now(dt.timezone.utc)


def _pod(container: str = "main", phase: str = "Running", state: dict | None = None) -> dict:
    return {"metadata": {"name": "p", "labels": {JOB: "job"}, "creationTimestamp": NOW.isoformat()},
            "spec": {"nodeName": "n"},
            "status": {"phase": phase, "containerStatuses": [{"name": container, "state": state or {"running": {}}}]}}


def _operator(mocker) -> K8sStepOperator:
    mocker.patch.object(K8sStepOperator, "api", new=object())
    operator = K8sStepOperator.__new__(K8sStepOperator)
    operator._senders_lock, operator._rest_reader_pool = threading.Lock(), None
    return operator


@pytest.mark.parametrize(
    "pod_count, container, waiting, read_here",
    [
        (1, "main", True, True),  # wait() sees the step container start: it reads the log itself
        (1, "main", False, False),  # get_status (a dynamic pipeline's poll) returns at once: a thread follows
        (2, "main", True, False),  # several pods: the waiting thread watches them all, threads follow
        (1, "sidecar", True, False),  # any other container: a thread
    ],
)
def test_wait_reads_a_one_pod_steps_own_log_and_threads_follow_the_rest(mocker, pod_count, container, waiting, read_here):
    started: list[str] = []
    mocker.patch.object(LogFollower, "start", lambda self: started.append(self.container) or self)
    sub = Submission("ns", "job", "train", K8sStepOperatorSettings(pod_count=pod_count), NOW)
    operator = _operator(mocker)
    operator._maybe_follow_logs(sub, _pod(container), waiting)
    operator._maybe_follow_logs(sub, _pod(container), waiting)  # seen again: followed once
    assert list(sub.logs) == [f"p/{container}"]
    assert sub.logs[f"p/{container}"].rest_reader is operator._rest_readers()  # one lasting pool for all
    assert (sub.read_here is sub.logs[f"p/{container}"]) is read_here
    assert started == ([] if read_here else [container])


class FakeFollower:
    """A follow the kubelet does not end yet: it returns only when interrupted."""

    def __init__(self) -> None:
        self.pod = "p"
        self.interrupted = threading.Event()
        self.cut = False

    def run_here(self) -> None:
        assert self.interrupted.wait(10), "never interrupted"

    def interrupt(self) -> None:
        self.cut = True
        self.interrupted.set()


def _reading(mocker, monkeypatch, pod: dict) -> tuple[PodWatch, FakeFollower, threading.Thread]:
    monkeypatch.setattr(Reflector, "start", lambda self: None)
    watch = PodWatch(SimpleNamespace(configuration=SimpleNamespace(host="https://x")), "ns", index_label=JOB)
    watch._replace([pod])
    sub = Submission("ns", "job", "train", K8sStepOperatorSettings(), NOW)
    sub.read_here = sub.logs["p/main"] = follower = FakeFollower()  # type: ignore[assignment]
    reader = threading.Thread(target=_operator(mocker)._read_log_here, args=(sub, watch))
    reader.start()
    return watch, follower, reader


def test_the_follow_is_cut_as_soon_as_the_pod_reports_the_container_ended(mocker, monkeypatch):
    """The kubelet would end the stream only at its next look at the quiet file (up to a second later)."""
    watch, follower, reader = _reading(mocker, monkeypatch, _pod())
    watch._apply("MODIFIED", _pod())  # still running: the stream stays open
    assert not follower.interrupted.wait(0.2) and reader.is_alive()
    watch._apply("MODIFIED", _pod(state={"terminated": {"exitCode": 0}}))
    reader.join(5)
    assert not reader.is_alive() and follower.cut


def test_a_step_over_by_its_pods_while_its_container_still_runs_is_cut_at_once(mocker, monkeypatch):
    pod = _pod()
    pod["metadata"]["deletionTimestamp"] = NOW.isoformat()
    watch, follower, reader = _reading(mocker, monkeypatch, pod)
    watch._apply("DELETED", pod)  # deleted while running (cancelled, evicted from a lost node)
    reader.join(5)
    assert not reader.is_alive() and follower.cut


def _sidecar_pod(phase: str) -> dict:
    pod = _pod(phase=phase)
    pod["spec"].update(restartPolicy="Never", initContainers=[{"name": "proxy", "restartPolicy": "Always"}])
    pod["status"]["initContainerStatuses"] = [{"name": "proxy", "state": {"terminated": {"exitCode": 1}}}]
    return pod


@pytest.mark.parametrize("phase, cut", [("Running", False), ("Succeeded", True)])
def test_a_sidecars_follow_is_cut_only_once_its_pod_is_over(mocker, phase, cut):
    """The kubelet restarts a sidecar that exits while the pod runs: its log goes on."""
    sub = Submission("ns", "job", "train", K8sStepOperatorSettings(), NOW)
    sub.logs["p/proxy"] = follower = FakeFollower()  # type: ignore[assignment]
    _operator(mocker)._cut_ended_follows(sub, [(_sidecar_pod(phase), False)])
    assert follower.cut is cut

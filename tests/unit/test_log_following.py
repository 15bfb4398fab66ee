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
    return K8sStepOperator.__new__(K8sStepOperator)


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
    assert (sub.read_here is sub.logs[f"p/{container}"]) is read_here
    assert started == ([] if read_here else [container])


class FakeFollower:
    """A follow the kubelet never ends (its node is gone, say): it returns only when interrupted."""

    def __init__(self) -> None:
        self.interrupted = threading.Event()
        self.cut = False
        self.caught_up = False

    def run_here(self) -> None:
        assert self.interrupted.wait(10), "never interrupted"

    def interrupt(self) -> None:
        self.cut = True
        self.interrupted.set()

    def catch_up(self) -> None:
        self.caught_up = True


def test_a_stream_still_open_when_the_pods_say_the_step_is_over_is_cut_and_the_rest_read_once(mocker, monkeypatch):
    monkeypatch.setattr(Reflector, "start", lambda self: None)
    watch = PodWatch(SimpleNamespace(configuration=SimpleNamespace(host="https://x")), "ns", index_label=JOB)
    watch._replace([_pod()])
    sub = Submission("ns", "job", "train", K8sStepOperatorSettings(), NOW)
    sub.read_here = follower = FakeFollower()  # type: ignore[assignment]
    operator = _operator(mocker)
    reader = threading.Thread(target=operator._read_log_here, args=(sub, watch))
    reader.start()
    watch._apply("MODIFIED", _pod())  # still running: the stream stays open
    assert not follower.interrupted.wait(0.2) and sub.read_here is None
    watch._apply("MODIFIED", _pod(state={"terminated": {"exitCode": 0}}))  # over by its pods' account
    reader.join(5)
    assert not reader.is_alive() and follower.cut and follower.caught_up


def test_a_step_already_over_when_its_log_is_read_is_cut_at_once(mocker, monkeypatch):
    monkeypatch.setattr(Reflector, "start", lambda self: None)
    watch = PodWatch(SimpleNamespace(configuration=SimpleNamespace(host="https://x")), "ns", index_label=JOB)
    watch._replace([_pod(phase="Failed", state={"terminated": {"exitCode": 1}})])  # no change will come
    sub = Submission("ns", "job", "train", K8sStepOperatorSettings(), NOW)
    sub.read_here = follower = FakeFollower()  # type: ignore[assignment]
    _operator(mocker)._read_log_here(sub, watch)
    assert follower.cut and follower.caught_up

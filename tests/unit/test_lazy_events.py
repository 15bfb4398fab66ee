"""The namespace's warnings are watched only when a step needs them: one that starts as it should costs no
event watch; a failing one is told with the warnings about it, listed before its verdict (no cluster: the
reflectors are faked, the events' LIST arrives from another thread as it would)."""

from __future__ import annotations

import datetime as dt
import threading
from types import SimpleNamespace

from k8s_step_operator.kube.podwatch import PodWatch
from k8s_step_operator.kube.reflector import Reflector
from k8s_step_operator.pod_status import Phase
from k8s_step_operator.settings import K8sStepOperatorSettings
from k8s_step_operator.step_operator import K8sStepOperator
from k8s_step_operator.submission import Submission

JOB = "batch.kubernetes.io/job-name"
NOW = dt.datetime.now(dt.timezone.utc)
WARNING = {"metadata": {"uid": "e1"}, "involvedObject": {"kind": "Pod", "name": "p"}, "type": "Warning",
           "reason": "Failed", "message": "registry says: manifest unknown", "lastTimestamp": NOW.isoformat()}


def _pod(status: dict) -> dict:
    return {"metadata": {"name": "p", "labels": {JOB: "job"}}, "spec": {"nodeName": "n"}, "status": status}


def _observed(mocker, monkeypatch, pod: dict) -> tuple[object, list[str]]:
    """The verdict of one look at a step with ``pod``, and the reflectors started meanwhile."""
    started: list[str] = []
    watch: PodWatch

    def start(reflector: Reflector) -> None:
        started.append(reflector.path.rsplit("/", 1)[-1])
        if reflector.path.endswith("/events"):  # its LIST comes a moment later, from its own thread
            threading.Timer(0.05, watch._replace_events, args=([WARNING],)).start()

    monkeypatch.setattr(Reflector, "start", start)
    watch = PodWatch(SimpleNamespace(configuration=SimpleNamespace(host="https://x")), "ns", index_label=JOB)
    watch._replace([pod])
    mocker.patch.object(K8sStepOperator, "api", new=object())
    operator = K8sStepOperator.__new__(K8sStepOperator)
    mocker.patch.object(K8sStepOperator, "_watch", return_value=watch)
    mocker.patch.object(K8sStepOperator, "_maybe_follow_logs")
    sub = Submission("ns", "job", "train", K8sStepOperatorSettings(), NOW)
    return operator._observe(sub), started


def test_a_step_that_starts_as_it_should_costs_no_event_watch(mocker, monkeypatch) -> None:
    running = _pod({"phase": "Running", "containerStatuses": [{"name": "main", "state": {"running": {}}}]})
    verdict, started = _observed(mocker, monkeypatch, running)
    assert verdict.phase is Phase.RUNNING
    assert started == ["pods"]


def test_a_failing_step_is_told_with_the_warnings_about_it(mocker, monkeypatch, caplog) -> None:
    unpullable = _pod({"phase": "Pending", "containerStatuses": [{"name": "main", "state": {"waiting": {
        "reason": "ErrImagePull", "message": 'failed to pull "img:1": not found'}}}]})
    verdict, started = _observed(mocker, monkeypatch, unpullable)
    assert verdict.phase is Phase.FAILED
    assert started == ["pods", "events"]
    assert "not found" in verdict.reason
    told = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert told == ["Step `train`: pod p: Failed: registry says: manifest unknown"]  # listed before the verdict

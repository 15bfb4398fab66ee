"""The shared watch's cache: deleted pods and events are kept within bounds, a finished step's pods are
forgotten, and events are found by the object they are about (no cluster: the reflectors are not started)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from k8s_step_operator.kube import podwatch
from k8s_step_operator.kube.podwatch import PodWatch
from k8s_step_operator.kube.reflector import Reflector


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch) -> PodWatch:
    monkeypatch.setattr(Reflector, "start", lambda self: None)
    return PodWatch(SimpleNamespace(configuration=SimpleNamespace(host="https://x")), "ml")


def _pod(name: str, job: str) -> dict:
    return {"metadata": {"name": name, "labels": {"batch.kubernetes.io/job-name": job}}}


def _event(uid: str, kind: str, name: str, count: int = 1) -> dict:
    return {"metadata": {"uid": uid}, "involvedObject": {"kind": kind, "name": name}, "count": count,
            "type": "Warning", "reason": "FailedMount"}


def test_deleted_pods_are_kept_within_bounds_and_forgotten_with_their_step(watch, monkeypatch) -> None:
    monkeypatch.setattr(podwatch, "MAX_GONE", 3)
    for i in range(5):
        watch._apply("ADDED", _pod(f"p{i}", "j-a" if i < 4 else "j-b"))
        watch._apply("DELETED", _pod(f"p{i}", "j-a" if i < 4 else "j-b"))
    assert [p["metadata"]["name"] for p, gone in watch.select("batch.kubernetes.io/job-name", "j-a")] == ["p2", "p3"]
    assert all(gone for _, gone in watch.select("batch.kubernetes.io/job-name", "j-a"))
    watch.forget("batch.kubernetes.io/job-name", "j-a")
    assert watch.select("batch.kubernetes.io/job-name", "j-a") == []
    assert [p["metadata"]["name"] for p, _ in watch.select("batch.kubernetes.io/job-name", "j-b")] == ["p4"]


def test_events_are_kept_per_object_within_bounds_updates_replace(watch, monkeypatch) -> None:
    monkeypatch.setattr(podwatch, "MAX_EVENTS", 2)
    watch._replace_events([_event("e1", "Pod", "p1"), _event("x", "Node", "n1")])  # not about a Pod or Job: dropped
    watch._apply_event("MODIFIED", _event("e1", "Pod", "p1", count=2))  # a repeat replaces, it is not a second event
    watch._apply_event("ADDED", _event("e2", "Job", "j"))
    assert [e["count"] for e in watch.events_about([("Pod", "p1")])] == [2]
    watch._apply_event("ADDED", _event("e3", "Pod", "p9"))  # over the bound: the oldest goes
    assert watch.events_about([("Pod", "p1")]) == []
    assert [e["metadata"]["uid"] for e in watch.events_about([("Job", "j"), ("Pod", "p9")])] == ["e2", "e3"]
    watch._apply_event("DELETED", _event("e3", "Pod", "p9"))  # an expired event still explains what happened
    assert len(watch.events_about([("Pod", "p9")])) == 1

"""The shared watch's cache: deleted pods and events are kept within bounds, a finished step's pods are
forgotten, and events are found by the object they are about (no cluster: the reflectors are not started)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from k8s_step_operator.kube import podwatch
from k8s_step_operator.kube.podwatch import PodWatch
from k8s_step_operator.kube.reflector import Reflector

JOB = "batch.kubernetes.io/job-name"


@pytest.fixture(params=[None, JOB], ids=["scan", "indexed"])
def watch(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> PodWatch:
    monkeypatch.setattr(Reflector, "start", lambda self: None)
    return PodWatch(SimpleNamespace(configuration=SimpleNamespace(host="https://x")), "ml", index_label=request.param)


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


def test_a_waiter_is_woken_only_by_its_own_jobs_pods_and_events(monkeypatch) -> None:
    import threading
    import time

    monkeypatch.setattr(Reflector, "start", lambda self: None)
    watch = PodWatch(SimpleNamespace(configuration=SimpleNamespace(host="https://x")), "ml", index_label=JOB)
    watch._replace([_pod("a-1", "a")])
    judged: list[int] = []
    done = threading.Event()

    def judge() -> str | None:
        judged.append(len(watch.select(JOB, "a")))
        return "finished" if done.is_set() else None

    result: list[str | None] = []
    waiter = threading.Thread(target=lambda: result.append(watch.wait_for(judge, timeout=10, job="a")))
    waiter.start()

    def settled(count: int) -> bool:
        deadline = time.monotonic() + 5
        while len(judged) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # and no more than that
        return len(judged) == count

    assert settled(1)
    for i in range(20):  # other Jobs' pods and events: not a single judgement
        watch._apply("ADDED", _pod(f"b-{i}", "b"))
        watch._apply_event("ADDED", _event(f"eb{i}", "Pod", f"b-{i}"))
    assert settled(1)
    watch._apply_event("ADDED", _event("ea", "Pod", "a-1"))  # an event about its pod
    assert settled(2)
    watch._apply_event("ADDED", _event("ej", "Job", "a"))  # about its Job
    assert settled(3)
    done.set()
    watch._apply("MODIFIED", _pod("a-1", "a"))  # its pod
    waiter.join(5)
    assert result == ["finished"] and len(judged) == 4
    assert watch._waiters == {}  # the waiter unregistered itself


def test_a_cache_without_an_index_wakes_a_jobs_waiter_on_any_pod_change(monkeypatch) -> None:
    """A shared watch first opened without the index (by another user of the process) cannot tell whose a
    change is: a waiter on a Job must still be woken by its pod's change."""
    import threading

    monkeypatch.setattr(Reflector, "start", lambda self: None)
    watch = PodWatch(SimpleNamespace(configuration=SimpleNamespace(host="https://x")), "ml", index_label=None)
    watch._replace([])
    finished = threading.Event()
    result: list[str | None] = []
    waiter = threading.Thread(
        target=lambda: result.append(watch.wait_for(lambda: "done" if finished.is_set() else None, timeout=10, job="a"))
    )
    waiter.start()
    while not watch._waiters:
        threading.Event().wait(0.01)
    finished.set()
    watch._apply("MODIFIED", _pod("a-1", "a"))
    waiter.join(5)
    assert result == ["done"]


def _step_pod(name: str, status: dict) -> dict:
    """A pod as the Job controller makes it from our own manifest, with the given status."""
    import copy

    from k8s_step_operator import manifest, submission
    from k8s_step_operator.settings import K8sStepOperatorSettings

    objects = submission.build_objects(
        K8sStepOperatorSettings(tolerations=[{"key": "gpu", "operator": "Exists"}]),
        manifest.StepIdentity("run", "pipe", "train", "0f8fad5b-d9cb-469f-a165-70867728950e"),
        namespace="ml", image="registry.example/img:1", command=["python", "x.py"],
        environment={"ZENML_STORE_URL": "https://zen"}, volumes=[], user=submission.User("u-1", 1000, 100),
        operator_id="op-1", host_paths=[],
    )
    template = copy.deepcopy(objects.job["spec"]["template"])
    meta = {**template["metadata"], "name": name, "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kube-controller-manager", "fieldsV1": {"f:spec": {}}}]}
    meta["labels"] = {**meta.get("labels", {}), JOB: "j-a"}
    return {"metadata": meta, "spec": {**template["spec"], "nodeName": "node-1"}, "status": status}


@pytest.mark.parametrize(
    "status",
    [
        {"phase": "Pending", "containerStatuses": [{"name": "main", "state": {"waiting": {
            "reason": "ErrImagePull", "message": "failed to resolve reference: not found"}}}]},
        {"phase": "Running", "containerStatuses": [{"name": "main", "state": {"running": {}}, "imageID": "sha256:1",
                                                    "containerID": "containerd://c", "resources": {}}],
         "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}], "hostIP": "10.1.0.1", "qosClass": "Burstable"},
        {"phase": "Failed", "containerStatuses": [{"name": "main", "state": {"terminated": {
            "exitCode": 3, "reason": "Error"}}}]},
        {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True",
                                             "lastTransitionTime": "2026-01-01T00:00:01Z"}]},
    ],
    ids=["pull-error", "running", "failed", "starting"],
)
def test_a_cached_pod_keeps_what_its_step_is_judged_by_and_drops_the_rest_of_its_spec(watch, status) -> None:
    import copy
    import datetime as dt

    from k8s_step_operator import pod_status

    full = _step_pod("p0", status)
    watch._apply("ADDED", copy.deepcopy(full))
    [(cached, _)] = watch.select(JOB, "j-a")
    assert set(cached["spec"]) == {"nodeName", "containers"}
    assert cached["spec"]["containers"] == [{"name": "main", "image": "registry.example/img:1"}]
    assert "managedFields" not in cached["metadata"] and "annotations" not in cached["metadata"]
    assert cached["metadata"]["labels"] == full["metadata"]["labels"] and full["metadata"]["annotations"]
    dropped = ("podIP", "podIPs", "hostIP", "qosClass")
    assert cached["status"] == {
        **{k: v for k, v in full["status"].items() if k not in dropped},
        **({"containerStatuses": [{k: v for k, v in c.items() if k in ("name", "state")}
                                  for c in full["status"]["containerStatuses"]]}
           if "containerStatuses" in full["status"] else {}),
    }
    judged = {
        "fatal_waiting_reasons": ["ErrImagePull"], "startup_timeout": 60.0, "schedule_timeout": 60.0,
        "now": dt.datetime(2026, 1, 1, 0, 0, 30, tzinfo=dt.timezone.utc),
    }
    assert pod_status.assess_step([(cached, False)], **judged) == pod_status.assess_step([(full, False)], **judged)


def test_a_nudge_runs_at_its_start_and_on_its_jobs_changes_only_while_its_block_runs(monkeypatch) -> None:
    monkeypatch.setattr(Reflector, "start", lambda self: None)
    watch = PodWatch(SimpleNamespace(configuration=SimpleNamespace(host="https://x")), "ml", index_label=JOB)
    watch._replace([])
    calls: list[int] = []

    def nudge() -> None:
        calls.append(len(watch.select(JOB, "j-a")))  # it may read the cache (the lock is re-entrant)
        if len(calls) == 3:
            raise RuntimeError("a nudge that fails")  # the watch goes on

    with watch.nudging("j-a", nudge):
        assert calls == [0]
        watch._apply("ADDED", _pod("p0", "j-a"))
        watch._apply("ADDED", _pod("q0", "j-b"))  # another Job's pod: not a change of j-a
        watch._apply("MODIFIED", _pod("p0", "j-a"))
        watch._apply("ADDED", _pod("p1", "j-a"))
    watch._apply("MODIFIED", _pod("p1", "j-a"))  # the block is over
    assert calls == [0, 1, 1, 2]
    assert [p["metadata"]["name"] for p, _ in watch.select(JOB, "j-a")] == ["p0", "p1"]


def test_the_events_reflector_starts_once_and_only_when_a_caller_wants_events(monkeypatch) -> None:
    started: list[str] = []
    monkeypatch.setattr(Reflector, "start", lambda self: started.append(self.path))
    api = SimpleNamespace(configuration=SimpleNamespace(host="https://x"))
    watch = PodWatch(api, "ml", index_label=JOB)
    assert started == ["/api/v1/namespaces/ml/pods"] and not watch.events_wanted
    assert watch.want_events() is False  # started, not listed yet
    assert watch.want_events(synced_within=0.05) is False
    assert started == ["/api/v1/namespaces/ml/pods", "/api/v1/namespaces/ml/events"]  # once
    watch._replace_events([_event("e1", "Pod", "p1")])
    assert watch.want_events() is True and watch.events_about([("Pod", "p1")])
    closed = PodWatch(api, "other", index_label=JOB)
    closed.close()
    closed.want_events()
    assert started[-1] == "/api/v1/namespaces/other/pods"  # a closed watch starts nothing more


def test_a_cleaned_up_steps_pods_stay_out_of_the_cache_a_new_pod_under_its_label_does_not(watch) -> None:
    def pod(uid: str, **meta: str) -> dict:
        return {"metadata": {"name": "p1", "uid": uid, "labels": {JOB: "j-a"}, **meta}}

    watch._apply("ADDED", pod("u1"))
    watch.forget(JOB, "j-a")  # clean-up: its Job deleted, the pod goes afterwards
    watch._apply("MODIFIED", pod("u1", deletionTimestamp="now"))
    watch._replace([pod("u1", deletionTimestamp="now")])  # a relist that still finds it
    assert watch.select(JOB, "j-a") == [] and not watch._pods
    watch._apply("DELETED", pod("u1", deletionTimestamp="now"))
    assert watch.select(JOB, "j-a") == [] and not watch._gone
    assert not watch._forgotten  # its deletion was the last word on it
    watch._apply("ADDED", pod("u2"))  # the same name and label, another pod
    assert [p["metadata"]["uid"] for p, _ in watch.select(JOB, "j-a")] == ["u2"]


def test_cached_pods_share_their_strings(watch) -> None:
    """Two pods parsed from two events (as the watch gets them) hold one copy of each key and common value."""
    import json

    def parsed(name: str) -> dict:
        text = json.dumps({"metadata": {"name": name, "labels": {JOB: "j-a"}},
                           "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
        return json.loads(text)  # each event's line is parsed on its own

    watch._apply("ADDED", parsed("p1"))
    watch._apply("ADDED", parsed("p2"))
    (a, _), (b, _) = watch.select(JOB, "j-a")
    assert a["status"]["phase"] == b["status"]["phase"] == "Running"
    assert a["status"]["phase"] is b["status"]["phase"]
    assert a["status"]["conditions"][0]["status"] is b["status"]["conditions"][0]["status"]
    key_a = next(k for k in a["status"]["conditions"][0] if k == "status")
    key_b = next(k for k in b["status"]["conditions"][0] if k == "status")
    assert key_a is key_b

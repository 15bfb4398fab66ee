"""Rules that turn a Pod into the status ZenML sees."""

import datetime as dt

import pytest

from k8s_step_operator.pod_status import (
    Phase,
    assess,
    deadline,
    ended_containers,
    failed_container,
    progress,
    pull_error,
    ran_to_an_end,
    waiting_reason,
)

FATAL = ["InvalidImageName", "ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError"]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def pod(phase="Pending", node=None, statuses=None, init=None, conditions=None, reason=None, message=None):
    status = {"phase": phase}
    if statuses is not None:
        status["containerStatuses"] = statuses
    if init is not None:
        status["initContainerStatuses"] = init
    if conditions is not None:
        status["conditions"] = conditions
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    spec = {"containers": [{"name": "main", "image": "python:3.11"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": spec, "status": status}


def main_state(**state):
    return [{"name": "main", "state": state}]


def test_succeeded_and_running():
    assert assess(pod("Succeeded")).phase is Phase.SUCCEEDED
    assert assess(pod("Running", "n", main_state(running={}))).phase is Phase.RUNNING


def test_main_container_exit_decides_before_phase_update():
    ok = assess(pod("Running", "n", main_state(terminated={"exitCode": 0})))
    bad = assess(pod("Running", "n", main_state(terminated={"exitCode": 2, "reason": "Error"})))
    assert ok.phase is Phase.SUCCEEDED
    assert bad.phase is Phase.FAILED and "exit code 2" in bad.reason


@pytest.mark.parametrize("reason", ["Evicted", "DeadlineExceeded"])
def test_pod_level_failure_reasons_are_shown(reason):
    verdict = assess(pod("Failed", "n", reason=reason, message="the node was low on memory"))
    assert verdict.phase is Phase.FAILED
    assert verdict.reason.startswith(reason) and "low on memory" in verdict.reason


def test_oomkilled_is_shown():
    verdict = assess(pod("Failed", "n", main_state(terminated={"exitCode": 137, "reason": "OOMKilled"})))
    assert "OOMKilled" in verdict.reason and "137" in verdict.reason


def test_fatal_waiting_reason_fails_fast_and_names_image():
    message = 'Back-off pulling image "python:3.11": ErrImagePull: python:3.11: not found'
    p = pod("Pending", "n", main_state(waiting={"reason": "ImagePullBackOff", "message": message}))
    verdict = assess(p, fatal_waiting_reasons=FATAL)
    assert verdict.phase is Phase.FAILED
    assert "ImagePullBackOff" in verdict.reason and "python:3.11" in verdict.reason


def test_waiting_reason_not_in_list_keeps_waiting():
    p = pod("Pending", "n", main_state(waiting={"reason": "ImagePullBackOff"}))
    assert assess(p, fatal_waiting_reasons=[]).phase is Phase.PENDING


def test_init_container_waiting_reason_counts():
    waiting = {"reason": "ErrImagePull", "message": "pull access denied, repository does not exist"}
    p = pod("Pending", "n", init=[{"name": "setup", "state": {"waiting": waiting}}])
    assert assess(p, fatal_waiting_reasons=FATAL).phase is Phase.FAILED


def test_unschedulable_fails_after_the_schedule_budget_with_scheduler_message():
    cond = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/2 nodes are available: 1 Insufficient nvidia.com/gpu."}]
    p = pod("Pending", conditions=cond)
    early = assess(p, schedule_timeout=60, startup_timeout=5, now=T0 + dt.timedelta(seconds=30))
    late = assess(p, schedule_timeout=60, startup_timeout=5, now=T0 + dt.timedelta(seconds=61))
    assert early.phase is Phase.PENDING and "Insufficient nvidia.com/gpu" in early.reason
    assert late.phase is Phase.FAILED
    assert late.reason.startswith("pod was not scheduled within 60s") and "Insufficient nvidia.com/gpu" in late.reason
    assert deadline(p, 60, 5) == T0 + dt.timedelta(seconds=60)


def test_the_start_budget_counts_from_scheduling_not_from_creation():
    scheduled = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:09:00Z"}]
    p = pod("Pending", "node-1", main_state(waiting={"reason": "ContainerCreating"}), conditions=scheduled)
    # nine minutes waiting for a node do not eat the two minutes allowed to start
    assert assess(p, schedule_timeout=600, startup_timeout=120, now=T0 + dt.timedelta(minutes=10)).phase is Phase.PENDING
    late = assess(p, schedule_timeout=600, startup_timeout=120, now=T0 + dt.timedelta(minutes=11, seconds=1))
    assert late.phase is Phase.FAILED
    assert late.reason == "pod did not start within 120s of being scheduled on node node-1: containers starting"
    assert deadline(p, 600, 120) == T0 + dt.timedelta(minutes=11)


def test_a_stuck_pod_says_why_from_its_last_warning_event():
    scheduled = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:01Z"}]
    p = pod("Pending", "node-1", main_state(waiting={"reason": "ContainerCreating"}), conditions=scheduled)
    mount = 'MountVolume.SetUp failed for volume "cfg" : configmap "settings" not found'
    events = [
        {"type": "Normal", "reason": "Scheduled", "message": "assigned", "involvedObject": {"kind": "Pod", "name": "p"},
         "lastTimestamp": "2026-01-01T00:00:01Z"},
        {"type": "Warning", "reason": "FailedMount", "message": mount, "involvedObject": {"kind": "Pod", "name": "p"},
         "lastTimestamp": "2026-01-01T00:00:03Z"},
        {"type": "Warning", "reason": "FailedMount", "message": "other pod",
         "involvedObject": {"kind": "Pod", "name": "other"}, "lastTimestamp": "2026-01-01T00:00:09Z"},
    ]
    from k8s_step_operator.pod_status import assess_step

    pending = assess_step([(p, False)], startup_timeout=30, events=events, now=T0 + dt.timedelta(seconds=10))
    assert pending.phase is Phase.PENDING and pending.reason == f"containers starting; last event FailedMount: {mount}"
    failed = assess_step([(p, False)], startup_timeout=30, events=events, now=T0 + dt.timedelta(seconds=32))
    assert failed.phase is Phase.FAILED and failed.reason.endswith(f"last event FailedMount: {mount}")


def test_no_budget_means_wait_forever():
    p = pod("Pending")
    assert assess(p, schedule_timeout=None, now=T0 + dt.timedelta(days=3)).phase is Phase.PENDING


@pytest.mark.parametrize(
    ("reason", "message", "kind"),
    [
        ("ErrImagePull", 'failed to pull "r/a:1": unexpected status: 429 Too Many Requests', "transient"),
        ("ErrImagePull", "dial tcp 127.0.0.1:1: connect: connection refused", "transient"),
        ("ErrImagePull", "net/http: TLS handshake timeout", "transient"),
        ("ImagePullBackOff", 'Back-off pulling image "r/a:1": ErrImagePull: 503 Service Unavailable', "transient"),
        ("ErrImagePull", "pull QPS exceeded", "transient"),
        ("ErrImagePull", 'failed to resolve reference "r/a:nope": r/a:nope: not found', "permanent"),
        ("ErrImagePull", "pull access denied, repository does not exist or may require authorization", "permanent"),
        ("ErrImagePull", "401 Unauthorized", "permanent"),
        ("InvalidImageName", 'couldn\'t parse image name "R/A": invalid reference format', "permanent"),
        ("ErrImagePull", "something nobody foresaw", "transient"),
        ("CrashLoopBackOff", "back-off restarting", None),
    ],
)
def test_pull_errors_are_transient_or_permanent(reason, message, kind):
    assert pull_error({"reason": reason, "message": message}) == kind


def test_a_transient_pull_error_waits_within_the_start_budget_and_then_fails_with_it():
    scheduled = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    refused = {"reason": "ErrImagePull", "message": "dial tcp 127.0.0.1:1: connect: connection refused"}
    p = pod("Pending", "n", main_state(waiting=refused), conditions=scheduled)
    assert assess(p, fatal_waiting_reasons=FATAL, startup_timeout=60, now=T0 + dt.timedelta(seconds=59)).phase is Phase.PENDING
    late = assess(p, fatal_waiting_reasons=FATAL, startup_timeout=60, now=T0 + dt.timedelta(seconds=61))
    assert late.phase is Phase.FAILED and "connection refused" in late.reason and "within 60s" in late.reason


def test_the_failed_container_is_the_first_non_zero_exit():
    init = [{"name": "setup", "state": {"terminated": {"exitCode": 0}}},
            {"name": "fetch", "state": {"terminated": {"exitCode": 2}}}]
    assert failed_container(pod("Failed", "n", init=init)) == "fetch"
    assert failed_container(pod("Failed", "n", main_state(terminated={"exitCode": 1}))) == "main"
    assert failed_container(pod("Succeeded", "n", main_state(terminated={"exitCode": 0}))) is None


def test_gone_pod_is_failed():
    assert assess(None).phase is Phase.FAILED


def test_waiting_reason_prefers_scheduler_message():
    cond = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "taint gpu"}]
    assert waiting_reason(pod(conditions=cond)) == "Unschedulable: taint gpu"
    assert waiting_reason(pod()) == "waiting to be scheduled"


def test_progress_lines_follow_transitions():
    created = pod()
    scheduled = pod("Pending", "local-gpu", main_state(waiting={"reason": "ContainerCreating"}))
    running = pod("Running", "local-gpu", main_state(running={}))
    done = pod("Succeeded", "local-gpu", main_state(terminated={"exitCode": 0}))
    assert progress(None, created) == ["created"]
    assert "scheduled on node local-gpu" in progress(created, scheduled)
    assert progress(scheduled, running) == ["phase Running"]
    assert progress(running, done) == ["phase Succeeded"]
    assert progress(running, running) == []


def test_pod_gc_disruption_names_reason_and_node():
    cond = [{"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
             "message": "PodGC: node no longer exists"}]
    verdict = assess(pod("Failed", "local-cpu", conditions=cond))
    assert verdict.reason == "DeletionByPodGC: PodGC: node no longer exists (node local-cpu)"


def test_ran_to_an_end_counts_the_main_exit_before_the_phase():
    assert ran_to_an_end(pod("Failed")) and ran_to_an_end(pod("Succeeded"))
    assert ran_to_an_end(pod("Running", statuses=main_state(terminated={"exitCode": 1})))  # phase not yet updated
    assert not ran_to_an_end(pod("Pending", statuses=main_state(waiting={"reason": "ImagePullBackOff"})))
    assert not ran_to_an_end(pod("Running", statuses=main_state(running={})))
    assert not ran_to_an_end(None)


# ------------------------------------------------------------ a step's pods (a Job's)
def named(p, name):
    return {**p, "metadata": {**p["metadata"], "name": name}}


def _with_policy(p: dict, policy: str, sidecar: bool = False) -> dict:
    p["spec"]["restartPolicy"] = policy
    p["spec"]["initContainers"] = [{"name": "init", "restartPolicy": "Always"} if sidecar else {"name": "init"}]
    return p


@pytest.mark.parametrize(
    "phase, policy, sidecar, exit_code, ended",
    [
        ("Running", "Never", False, 1, ["init", "main"]),  # a Job's pod: a terminated container stays so
        ("Running", "Never", True, 0, ["main"]),  # a sidecar is restarted until the pod ends
        ("Succeeded", "Never", True, 0, ["init", "main"]),  # ... and then it is over too
        ("Running", "OnFailure", False, 1, ["init"]),  # a failed container runs again
        ("Running", "OnFailure", False, 0, ["init", "main"]),
        ("Running", "Always", False, 0, []),
    ],
)
def test_ended_containers_are_those_the_kubelet_will_not_start_again(phase, policy, sidecar, exit_code, ended):
    p = pod(phase, statuses=main_state(terminated={"exitCode": exit_code}),
            init=[{"name": "init", "state": {"terminated": {"exitCode": 0}}}])
    assert ended_containers(_with_policy(p, policy, sidecar)) == ended


def test_a_running_container_has_not_ended():
    p = pod("Running", statuses=main_state(running={}), init=[{"name": "init", "state": {"running": {}}}])
    assert ended_containers(_with_policy(p, "Never", sidecar=True)) == []


def test_step_of_one_pod_follows_that_pod():
    from k8s_step_operator.pod_status import assess_step

    assert assess_step([(named(pod("Succeeded"), "a"), False)]).phase is Phase.SUCCEEDED
    running = assess_step([(named(pod("Running", "n", main_state(running={})), "a"), False)])
    assert (running.phase, running.pod) == (Phase.RUNNING, "a")
    gone = assess_step([(named(pod("Running", "n1", main_state(running={})), "a"), True)])
    assert gone.phase is Phase.FAILED and gone.reason == "the step pod was deleted before it finished (it was on node n1)"
    # deleted after it succeeded (the Job's clean-up): still a success
    assert assess_step([(named(pod("Succeeded"), "a"), True)]).phase is Phase.SUCCEEDED


def test_step_of_several_pods_needs_every_pod():
    from k8s_step_operator.pod_status import assess_step

    done = (named(pod("Succeeded"), "j-0"), False)
    running = (named(pod("Running", "n", main_state(running={})), "j-1"), False)
    assert assess_step([done, running], 2).phase is Phase.RUNNING
    assert assess_step([done], 2).phase is Phase.PENDING  # the other pod is not there yet
    assert assess_step([done, (named(pod("Succeeded"), "j-1"), False)], 2).phase is Phase.SUCCEEDED


def test_the_pod_that_failed_explains_the_step_not_the_ones_stopped_for_it():
    from k8s_step_operator.pod_status import assess_step

    failed = named(pod("Failed", "n", main_state(terminated={"exitCode": 3, "reason": "Error"})), "j-1")
    stopped = named(pod("Running", "n", main_state(running={})), "j-0")
    verdict = assess_step([(stopped, True), (failed, False)], 2)
    assert verdict.phase is Phase.FAILED and verdict.pod == "j-1"
    assert verdict.reason == "container 'main' terminated: Error (exit code 3)"


def test_no_pod_yet_fails_after_the_schedule_budget_from_submission_with_the_jobs_event():
    from k8s_step_operator.pod_status import assess_step

    waiting = assess_step([], schedule_timeout=60, submitted=T0, now=T0 + dt.timedelta(seconds=59))
    assert waiting.phase is Phase.PENDING
    late = assess_step([], schedule_timeout=60, submitted=T0, now=T0 + dt.timedelta(seconds=61))
    assert (late.phase, late.reason) == (Phase.FAILED, "the Job created no pod within 60s")
    quota = {"type": "Warning", "reason": "FailedCreate", "message": 'pods "j-x" is forbidden: exceeded quota: q',
             "involvedObject": {"kind": "Job", "name": "j"}, "lastTimestamp": "2026-01-01T00:00:02Z"}
    late = assess_step([], schedule_timeout=60, submitted=T0, now=T0 + dt.timedelta(seconds=61), job="j", events=[quota])
    assert late.reason == 'the Job created no pod within 60s; last event FailedCreate: pods "j-x" is forbidden: exceeded quota: q'
    # no submission time (a Kueue queue admits the Job whenever it can): no deadline
    assert assess_step([], schedule_timeout=60, now=T0 + dt.timedelta(days=1)).phase is Phase.PENDING


def test_the_kubelets_pull_rate_limit_is_not_a_fatal_pull_error():
    throttled = pod("Pending", "n", main_state(waiting={"reason": "ErrImagePull", "message": "pull QPS exceeded"}))
    verdict = assess(throttled, fatal_waiting_reasons=FATAL)
    assert verdict.phase is Phase.PENDING and "pull QPS exceeded" in verdict.reason
    missing = pod("Pending", "n", main_state(waiting={"reason": "ErrImagePull", "message": "not found"}))
    assert assess(missing, fatal_waiting_reasons=FATAL).phase is Phase.FAILED


def test_only_a_failed_pod_that_stays_is_worth_keeping():
    from k8s_step_operator.pod_status import worth_keeping

    ended = pod("Failed", "n", main_state(terminated={"exitCode": 1}))
    assert worth_keeping(ended)
    assert not worth_keeping(pod("Pending", "n"))  # never ran
    leaving = {**ended, "metadata": {**ended["metadata"], "deletionTimestamp": "2026-01-01T00:01:00Z"}}
    assert not worth_keeping(leaving)
    gc = pod("Failed", "n", conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC"}])
    assert not worth_keeping(gc)  # its node is gone: pod GC deletes it anyway


def test_the_first_pod_to_fail_explains_the_step_even_when_the_others_failed_too():
    from k8s_step_operator.pod_status import assess_step

    def ended(name, code, at):
        term = {"exitCode": code, "reason": "Error", "finishedAt": f"2026-01-01T00:00:{at:02d}Z"}
        return (named(pod("Failed", "n", main_state(terminated=term)), name), False)

    # rank 1 failed at :05; rank 0 was stopped for it and ended at :40 (SIGKILL after its grace period)
    verdict = assess_step([ended("j-0-a", 137, 40), ended("j-1-b", 3, 5)], 2)
    assert verdict.pod == "j-1-b" and "exit code 3" in verdict.reason

"""Faults on the session cluster: each ends with the right ZenML status, a clear reason
written into the step run, streamed logs intact, and nothing left behind that the
clean-up policy should have removed.

Control-plane crashes, 410 Gone and node deletion are in ``test_destructive.py``
(their own cluster).
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from k8sso_localcluster.images import ref
from k8sso_localcluster.nodes import processes_mentioning
from kubernetes import client
from zenml.enums import ExecutionStatus

from .conftest import Drill, bounded, pod_exists, secret_exists, settle, wait_until

pytestmark = pytest.mark.cluster

SLEEPER = "import time\nprint('started', flush=True)\ntime.sleep(120)\nprint('should never print', flush=True)\n"


def _secret_of(drill: Drill, step) -> str:
    return f"{drill.job_name(step)}-env"


def test_evicted_pod_fails_with_reason_evicted(drill: Drill) -> None:
    """The kubelet's eviction manager evicts a pod that writes past its ephemeral-storage limit."""
    code = "open('/tmp/fill', 'wb').write(b'x' * 8 * 2**20)\n" + SLEEPER
    settings = {"pod_settings": {"resources": {"limits": {"ephemeral-storage": "1Mi"}}}}
    step = drill.submit(drill.step("evictee", code, settings=settings))
    waiting = drill.wait_async(step)
    drill.wait_line(step, "started")
    assert waiting.result(180) is ExecutionStatus.FAILED
    [reason] = drill.reasons(step)
    assert reason.startswith(f"pod {drill.namespace}/{drill.pod_name(step)}: Evicted: "), reason
    assert "ephemeral local storage usage exceeds the total limit of containers 1Mi" in reason
    assert drill.console.lines(step.prefix) == ["started"]
    assert drill.status(step) is ExecutionStatus.FAILED  # asked again: the same answer
    drill.cleanup(step)
    # default policy keeps a failed pod for debugging, until its Job's TTL (a day by default); the
    # Secret with ZenML's credentials never outlives the step
    settle(drill.api, drill.namespace, pods=[drill.pod_name(step)])
    assert not secret_exists(drill.api, drill.namespace, _secret_of(drill, step))
    [owner] = drill.pod(step).metadata.owner_references
    assert (owner.kind, owner.name) == ("Job", drill.job_name(step))
    job = client.BatchV1Api(drill.api).read_namespaced_job(drill.job_name(step), drill.namespace)
    assert job.spec.ttl_seconds_after_finished == 24 * 3600


def test_unpullable_image_fails_fast_naming_image_and_reason(drill: Drill) -> None:
    image = ref("drills-no-such-image", "1.0")  # a real pull from the local registry, answered 404
    step = drill.submit(drill.step("unpullable", "print('never')", image=image, settings={"startup_timeout": 600}))
    started = time.monotonic()
    assert drill.wait(step, 90) is ExecutionStatus.FAILED
    assert time.monotonic() - started < 60, "must fail on the pull error, not on the 600 s startup timeout"
    [reason] = drill.reasons(step)
    assert image in reason
    assert "ErrImagePull" in reason or "ImagePullBackOff" in reason
    assert "container 'main'" in reason
    drill.cleanup(step)
    # the pod never ran, so it is deleted (not kept); its Secret goes with it by garbage collection
    secret = _secret_of(drill, step)
    wait_until(lambda: not secret_exists(drill.api, drill.namespace, secret), 30, "its Secret deleted")
    wait_until(lambda: not pod_exists(drill.api, drill.namespace, drill.pod_name(step)), 30, "its pod deleted")


def test_cleanup_leaves_no_pending_pod_of_a_failed_step(drill: Drill) -> None:
    step = drill.submit(drill.step("pending-leak", "print('never')", image=ref("drills-leak", "1")))
    assert drill.wait(step, 90) is ExecutionStatus.FAILED
    drill.cleanup(step)

    def settled() -> bool:
        if not pod_exists(drill.api, drill.namespace, drill.pod_name(step)):
            return True
        return drill.pod(step).status.phase in ("Succeeded", "Failed")

    wait_until(settled, 20, "the failed step's pod deleted or terminated")


def test_unschedulable_pod_fails_after_the_schedule_budget_with_scheduler_message(drill: Drill) -> None:
    settings = {"schedule_timeout": 6, "pod_settings": {"node_selectors": {"drill.example.com/pool": "nowhere"}}}
    step = drill.submit(drill.step("unschedulable", "print('never')", settings=settings))
    created = drill.pod(step).metadata.creation_timestamp
    status = drill.wait(step, 60)
    failed_after = time.time() - created.timestamp()
    assert status is ExecutionStatus.FAILED
    assert 6 <= failed_after < 40, failed_after
    [reason] = drill.reasons(step)
    assert "pod was not scheduled within 6s" in reason
    assert "Unschedulable" in reason
    assert "node(s) didn't match Pod's node affinity/selector" in reason  # the scheduler's own words
    drill.cleanup(step)
    secret = _secret_of(drill, step)
    wait_until(lambda: not secret_exists(drill.api, drill.namespace, secret), 30, "its Secret deleted")
    wait_until(lambda: not pod_exists(drill.api, drill.namespace, drill.pod_name(step)), 30, "its pod deleted")


def test_oom_killed_container_fails_with_reason_oomkilled(drill: Drill) -> None:
    code = "print('allocating', flush=True)\nx = bytearray(512 * 2**20)\nprint('survived', flush=True)\n"
    settings = {"pod_settings": {"resources": {"limits": {"memory": "64Mi"}}}}
    step = drill.submit(drill.step("hungry", code, settings=settings))
    assert drill.wait(step, 90) is ExecutionStatus.FAILED
    [reason] = drill.reasons(step)
    assert "container 'main' terminated: OOMKilled (exit code 137)" in reason
    assert drill.console.lines(step.prefix) == ["allocating"]
    drill.cleanup(step)


def test_exit_137_shows_code_and_signal(drill: Drill) -> None:
    """SIGKILL from outside the container (a container's PID 1 cannot be killed from inside)."""
    marker = f"sigkill-me-{uuid.uuid4().hex}"
    code = f"import time\nprint('waiting for the kill', flush=True)\ntime.sleep(600)  # {marker}\n"
    step = drill.submit(drill.step("sigkilled", code))
    waiting = drill.wait_async(step)
    drill.wait_line(step, "waiting for the kill")
    pids = processes_mentioning(marker)
    assert pids, "the step's process is not visible on this machine"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert waiting.result(90) is ExecutionStatus.FAILED
    [reason] = drill.reasons(step)
    assert "container 'main' terminated" in reason and "exit code 137" in reason
    assert "OOMKilled" not in reason
    assert drill.console.lines(step.prefix) == ["waiting for the kill"]
    drill.cleanup(step)



def test_cancel_mid_run_removes_pod_and_secret(drill: Drill) -> None:
    step = drill.submit(drill.step("cancelled", SLEEPER, settings={"delete_grace_period_seconds": 2}))
    waiting = drill.wait_async(step)
    drill.wait_line(step, "started")
    pod_name, secret = drill.pod_name(step), _secret_of(drill, step)
    # the kubelet has read the step's environment: its Secret is deleted while the step still runs
    wait_until(lambda: not secret_exists(drill.api, drill.namespace, secret), 30, "its Secret deleted once read")
    assert pod_exists(drill.api, drill.namespace, pod_name)
    bounded(lambda: drill.operator.cancel(step.run), 30, "cancel")
    wait_until(lambda: not pod_exists(drill.api, drill.namespace, pod_name), 60, "pod deleted")
    assert waiting.result(30) is ExecutionStatus.FAILED  # a wait() in progress returns on cancel
    assert "should never print" not in drill.console.text
    drill.cleanup(step)  # ZenML still cleans up after a cancel: must be harmless
    settle(drill.api, drill.namespace)


def test_a_kubelet_faster_than_the_secrets_post_waits_for_it_and_the_step_runs(drill: Drill) -> None:
    """The Job runs at once and its Secret follows. Here the Secret's POST is held back until the real
    kubelet has tried to configure the container without it (CreateContainerConfigError, which fails a
    step by default): the step must not fail for it, and must run once the Secret exists."""
    from k8s_step_operator.kube.client import Client

    step = drill.step("late_secret", "import os\nprint('env', os.environ['DRILL_STEP'], flush=True)")
    real_create = Client.create
    seen: dict[str, object] = {}

    def held_back(self, path, body, *, dry_run=False, retry=False):
        if path.endswith("/secrets") and not dry_run:
            def config_error() -> bool:
                statuses = drill.pod(step).status.container_statuses or []
                return any(cs.state.waiting and cs.state.waiting.reason == "CreateContainerConfigError" for cs in statuses)

            wait_until(config_error, 90, "the kubelet reporting CreateContainerConfigError")
            seen["status"] = drill.operator.get_status(step.run)  # judged while the Secret is missing: not a failure
        return real_create(self, path, body, dry_run=dry_run, retry=retry)

    drill.mocker.patch.object(Client, "create", held_back)
    drill.submit(step)  # returns after the Job: the Secret is held back on the sender thread
    assert drill.wait(step, 120) is ExecutionStatus.COMPLETED
    assert seen["status"] is ExecutionStatus.PROVISIONING
    assert drill.console.lines(step.prefix) == ["env late_secret"]
    assert drill.reasons(step) == []
    drill.cleanup(step)

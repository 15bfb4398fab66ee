"""50 steps at once through one operator (one shared pod watch), some failing:
no cross-talk between their statuses, failure reasons or streamed logs."""

from __future__ import annotations

import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from zenml.enums import ExecutionStatus

from k8s_step_operator.kube.podwatch import PodWatch
from k8s_step_operator.step_operator import K8sStepOperator

from .conftest import Drill, settle

pytestmark = pytest.mark.cluster

N_STEPS = 50
N_LINES = 5
BUDGET = 120.0  # seconds for all 50 to be submitted and finished (typically 30-60 s on 2 cores)


def _code(exit_code: int) -> str:
    """Prints its token, which it reads from its environment: a Secret shared with other steps must give
    each step its own values."""
    return (
        "import os, sys, time\n"
        f"for j in range({N_LINES}):\n"
        "    print(os.environ['DRILL_TOKEN'], 'line', j, flush=True)\n"
        "    time.sleep(0.2)\n"
        f"sys.exit({exit_code})\n"
    )


def test_fifty_concurrent_steps_some_failing_without_cross_talk(drill: Drill) -> None:
    tokens = {i: f"tok{i:02d}-{uuid.uuid4().hex[:8]}" for i in range(N_STEPS)}
    exits = {i: (0 if i % 5 else 10 + i // 5) for i in range(N_STEPS)}  # every 5th fails, each with its own code
    steps = [
        drill.step(f"c{i:02d}", _code(exits[i]), environment={"DRILL_STEP": f"c{i:02d}", "DRILL_TOKEN": tokens[i]})
        for i in range(N_STEPS)
    ]
    secrets_posted = drill.mocker.spy(K8sStepOperator, "_post_batch")

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(drill.submit, steps))
    submitted = time.monotonic() - started
    waits = [drill.wait_async(step) for step in steps]
    statuses = [w.result(max(BUDGET - (time.monotonic() - started), 1.0)) for w in waits]
    elapsed = time.monotonic() - started
    sys.__stderr__.write(
        f"\n50 steps: submitted in {submitted:.1f}s, all finished after {elapsed:.1f}s, "
        f"{secrets_posted.call_count} Secrets\n"
    )
    # one run's steps created while a Secret's POST was out share the next one
    assert 1 <= secrets_posted.call_count < N_STEPS

    watch = PodWatch.shared(drill.operator.api, drill.namespace)
    assert watch.list_requests == 2, "one shared LIST of pods and one of events for all 50 steps"
    events = list(watch._events.values())  # the failed Jobs' BackoffLimitExceeded, at least; no Normal event
    assert events and {e["type"] for e in events} == {"Warning"}, [e.get("reason") for e in events]
    cached = list(watch._pods.values()) + list(watch._gone.values())
    assert cached and not any("managedFields" in p["metadata"] for p in cached), "the cache keeps no field-ownership records"
    for i, (step, status) in enumerate(zip(steps, statuses, strict=True)):
        expected = ExecutionStatus.COMPLETED if exits[i] == 0 else ExecutionStatus.FAILED
        assert status is expected, (step.name, status)
        lines = drill.console.lines(step.prefix)
        assert lines == [f"{tokens[i]} line {j}" for j in range(N_LINES)], (step.name, lines)
        reasons = drill.reasons(step)
        if exits[i]:
            assert reasons == [
                f"pod {drill.namespace}/{drill.pod_name(step)}: container 'main' terminated: Error "
                f"(exit code {exits[i]})\nlast lines of container 'main':\n"
                + "\n".join(f"  {tokens[i]} line {j}" for j in range(N_LINES))  # its own, none of another's
            ]
        else:
            assert reasons == []
        assert drill.status(step) is expected  # get_status agrees with wait

    # every streamed line belongs to the step whose prefix it carries
    for line in drill.console.text.splitlines():
        if line.startswith("[c") and " line " in line:
            prefix, token = line.split("] ", 1)
            assert token.startswith(f"tok{prefix[2:]}-"), line

    for step in steps:
        drill.cleanup(step)
    failed = sorted(drill.pod_name(s) for i, s in enumerate(steps) if exits[i])
    settle(drill.api, drill.namespace, failed)
    assert elapsed < BUDGET

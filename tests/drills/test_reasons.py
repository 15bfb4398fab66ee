"""What the operator says while a step waits and when it fails: Kubernetes events as reasons, the
start budget, and the logs of every container — on the session cluster's real kubelets."""

from __future__ import annotations

import logging
import time

import pytest
from zenml.enums import ExecutionStatus

from .conftest import PY_IMAGE, Drill, wait_until

pytestmark = pytest.mark.cluster


def test_a_volume_that_cannot_be_mounted_fails_within_the_start_budget_with_the_events_message(drill: Drill) -> None:
    settings = {
        "startup_timeout": 15,
        "pod_settings": {
            "volumes": [{"name": "cfg", "configMap": {"name": "drill-missing-config"}}],
            "volume_mounts": [{"name": "cfg", "mountPath": "/etc/cfg"}],
        },
    }
    step = drill.submit(drill.step("unmountable", "print('never')", settings=settings))
    assert drill.wait(step, 120) is ExecutionStatus.FAILED
    failed_at = time.time()
    pod = drill.pod(step)
    scheduled = next(c for c in pod.status.conditions if c.type == "PodScheduled").last_transition_time
    assert 15 <= failed_at - scheduled.timestamp() < 45, failed_at - scheduled.timestamp()
    [reason] = drill.reasons(step)
    assert f"pod did not start within 15s of being scheduled on node {pod.spec.node_name}: containers starting" in reason
    assert 'last event FailedMount: MountVolume.SetUp failed for volume "cfg" : configmap "drill-missing-config" not found' in reason
    # the event was reported while the step waited, not only at the end
    warnings = drill.logs.messages(logging.WARNING)
    assert any("Step `unmountable`: pod " in m and "FailedMount" in m for m in warnings), warnings
    drill.cleanup(step)


INIT = "print('fetching inputs', flush=True)"
SIDECAR = "import time\nprint('proxy up', flush=True)\ntime.sleep(600)"
FAILING = "import sys\nfor i in range(15):\n    print(f'working {i}', flush=True)\nsys.exit(4)"


def test_every_container_streams_and_a_failure_ends_with_its_last_lines(drill: Drill) -> None:
    image = PY_IMAGE
    settings = {
        "pod_settings": {
            "init_containers": [{"name": "fetch", "image": image, "command": ["python", "-c", INIT]}],
            "sidecar_containers": [{"name": "proxy", "image": image, "command": ["python", "-c", SIDECAR]}],
        },
        "delete_grace_period_seconds": 1,
    }
    step = drill.submit(drill.step("chatty", FAILING, settings=settings))
    assert drill.wait(step, 120) is ExecutionStatus.FAILED
    lines = drill.console.text.splitlines()
    assert "[chatty:fetch] fetching inputs" in lines and "[chatty:proxy] proxy up" in lines, lines
    assert [line for line in lines if line.startswith("[chatty] ")] == [f"[chatty] working {i}" for i in range(15)]
    [reason] = drill.reasons(step)
    assert "container 'main' terminated: Error (exit code 4)" in reason
    tail = reason.split("last lines of container 'main':\n", 1)[1].splitlines()
    assert tail == [f"  working {i}" for i in range(5, 15)], reason  # the last ten
    drill.cleanup(step)


def test_a_pipeline_that_only_polls_get_status_streams_logs_too(drill: Drill) -> None:
    """Dynamic pipelines poll ``get_status`` instead of blocking in ``wait()``."""
    step = drill.submit(drill.step("polled", "import time\nprint('polled line', flush=True)\ntime.sleep(2)"))

    def finished() -> bool:
        return drill.status(step) in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED)

    wait_until(finished, 120, "the polled step finished", interval=0.5)
    assert drill.status(step) is ExecutionStatus.COMPLETED
    wait_until(lambda: drill.console.lines(step.prefix) == ["polled line"], 10, "its log line, once")
    drill.cleanup(step)

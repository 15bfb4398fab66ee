"""The baseline of measure 2: a step operator that runs ZenML's entrypoint command as a plain
local subprocess (``subprocess.Popen(entrypoint_command, env=os.environ | environment)``).

It gets the very command and environment ZenML builds for the other operators (and, like
them, asks for a skipped Docker build per step so that ZenML ships the code archive and the
entrypoint downloads it), so a pipeline run on it shows what the step costs with no
operator at all. The subprocess'
own wall time (Popen → exit) is appended as a JSON line to ``$K8SBENCH_SUBPROCESS_LOG``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import TYPE_CHECKING, Dict, List, Tuple, Type

from zenml.config.build_configuration import BuildConfiguration
from zenml.enums import ExecutionStatus
from zenml.step_operators import BaseStepOperator, BaseStepOperatorConfig, BaseStepOperatorFlavor

if TYPE_CHECKING:
    from zenml.config.step_run_info import StepRunInfo
    from zenml.models import PipelineSnapshotBase, StepRunResponse


class SubprocessStepOperator(BaseStepOperator):
    """``submit`` starts the entrypoint command locally; ``wait`` waits for the process."""

    _procs: Dict[str, Tuple[subprocess.Popen, float, str]] = {}

    def get_docker_builds(self, snapshot: "PipelineSnapshotBase") -> List[BuildConfiguration]:
        """Like the Kubernetes operators: one (skipped) build per step, so ZenML ships the code
        archive and the entrypoint downloads it, exactly as it does inside a pod."""
        return [
            BuildConfiguration(key="bench_subprocess", settings=step.config.docker_settings, step_name=name)
            for name, step in snapshot.step_configurations.items()
            if step.config.uses_step_operator(self.name)
        ]

    def submit(self, info: "StepRunInfo", entrypoint_command: List[str], environment: Dict[str, str]) -> None:
        # No cwd of its own: ZenML's entrypoint changes to /app first thing, as in a pod.
        started = time.perf_counter()
        proc = subprocess.Popen(list(entrypoint_command), env={**os.environ, **environment})
        self._procs[str(info.step_run_id)] = (proc, started, info.pipeline_step_name)

    def get_status(self, step_run: "StepRunResponse") -> ExecutionStatus:
        proc, _, _ = self._procs[str(step_run.id)]
        code = proc.poll()
        if code is None:
            return ExecutionStatus.RUNNING
        return ExecutionStatus.COMPLETED if code == 0 else ExecutionStatus.FAILED

    def wait(self, step_run: "StepRunResponse") -> ExecutionStatus:
        proc, started, step = self._procs[str(step_run.id)]
        code = proc.wait()
        exited_at = time.time()
        seconds = time.perf_counter() - started
        path = os.environ.get("K8SBENCH_SUBPROCESS_LOG")
        if path:
            with open(path, "a") as fh:
                record = {"step": step, "subprocess_s": seconds, "exit_code": code, "exited_at": exited_at}
                fh.write(json.dumps(record) + "\n")
        return ExecutionStatus.COMPLETED if code == 0 else ExecutionStatus.FAILED


class SubprocessStepOperatorConfig(BaseStepOperatorConfig):
    """Nothing to configure; runs on this machine."""

    @property
    def is_local(self) -> bool:
        return True


class SubprocessStepOperatorFlavor(BaseStepOperatorFlavor):
    """Flavor ``bench-subprocess``."""

    @property
    def name(self) -> str:
        return "bench-subprocess"

    @property
    def config_class(self) -> Type[SubprocessStepOperatorConfig]:
        return SubprocessStepOperatorConfig

    @property
    def implementation_class(self) -> Type[SubprocessStepOperator]:
        return SubprocessStepOperator

"""Measure 2: a real ZenML pipeline run whose steps go through one step operator.

Copied into the bench's ZenML repository (a tmp dir) and run from there, like a user's
pipeline file: ``python pipeline_driver.py --stack S --operator NAME --kind KIND --out F``.

The pipeline is a chain of ``--steps`` identical steps that sleep ``--seconds``; the local
orchestrator runs them one after the other. ZenML's step launcher is timed from the
outside: ``StepLauncher._run_step_with_step_operator`` (build the entrypoint command →
``submit`` → ``wait`` → finalize → clean up) is wrapped, and so are the operator's
``submit_with_allocation``/``wait``/``cleanup_step_submission``. Nothing else changes.

For ZenML's built-in ``kubernetes`` operator two stack checks are switched off in this
process only (``is_remote`` → False, ``validator`` → None): they refuse a local ZenML
store and a stack without container registry/image builder, i.e. they check the stack's
composition, not how the operator runs a step. Its submit/get_status/wait are untouched.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
import time
from typing import Any

from zenml import pipeline, step
from zenml.config import DockerSettings

IMAGE = os.environ.get("K8SBENCH_IMAGE", "registry.k8sso.local/k8sso/step:latest")
DOCKER = DockerSettings(skip_build=True, parent_image=IMAGE)


def _process_start_time() -> float:
    """Wall-clock start of this process, ~10 ms resolution: now − (uptime − start ticks since boot)."""
    with open("/proc/self/stat") as fh:
        ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as fh:
        uptime = float(fh.read().split()[0])
    return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))


@step(settings={"docker": DOCKER})
def sleepy(seconds: float, marker: str) -> None:
    """The benchmarked step: sleep. Notes when its process started, when the function ran, and
    (from an ``atexit`` hook, i.e. after ZenML has finished the step run) when the process ends."""
    notes: dict = {"function_start": time.time()}
    time.sleep(seconds)
    notes["function_end"] = time.time()
    try:
        notes["process_start"] = _process_start_time()
    except (OSError, ValueError, IndexError):
        notes["process_start"] = None

    def at_exit() -> None:
        notes["process_exit"] = time.time()
        with open(marker, "w") as fh:
            json.dump(notes, fh)

    atexit.register(at_exit)


def build_pipeline(operator: str, steps: int, seconds: float, markers: str) -> Any:
    @pipeline(name="bench_overhead", enable_cache=False)
    def bench_overhead() -> None:
        for i in range(steps):
            after = f"sleep_{i - 1}" if i else None
            marker = os.path.join(markers, f"{operator}-sleep_{i}.json")
            sleepy.with_options(step_operator=operator)(seconds, marker, id=f"sleep_{i}", after=after)

    return bench_overhead


def _timed(cls: type, method: str, records: list, captured: dict) -> None:
    original = getattr(cls, method)

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        start, started = time.time(), time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            info = kwargs.get("info") or (args[0] if args else None)
            step_run = kwargs.get("step_run") or info
            name = getattr(info, "pipeline_step_name", None) or getattr(step_run, "name", None)
            records.append({"method": method, "step": name, "start": start, "seconds": time.perf_counter() - started})
            if method == "submit_with_allocation" and "command" not in captured:
                captured["command"] = list(kwargs.get("entrypoint_command") or args[1])
                captured["environment_keys"] = sorted((kwargs.get("environment") or args[2]).keys())

    setattr(cls, method, wrapper)


def _trace_k8s(captured: dict) -> None:
    """Our operator only: when the shared watch saw each pod's container terminate, and how long
    ``wait()`` then waited for the log stream to end (read-only wrappers, no behaviour change)."""
    from k8s_step_operator.kube.logs import LogFollower
    from k8s_step_operator.kube.podwatch import PodWatch
    from k8s_step_operator.step_operator import K8sStepOperator

    terminated: dict = captured.setdefault("pod_terminated_seen", {})
    joins: list = captured.setdefault("log_joins", [])
    pods: dict = captured.setdefault("step_pods", {})
    apply, join, wait = PodWatch._apply, LogFollower.join, K8sStepOperator.wait

    def _apply(self: Any, kind: str, obj: dict) -> None:
        statuses = (obj.get("status") or {}).get("containerStatuses") or []
        name = obj["metadata"]["name"]
        if name not in terminated and any("terminated" in (c.get("state") or {}) for c in statuses):
            terminated[name] = time.time()
        apply(self, kind, obj)

    def _join(self: Any, timeout: Any = None) -> bool:
        started = time.time()
        done = join(self, timeout)
        joins.append({"pod": self.pod, "start": started, "seconds": time.time() - started, "ended": done})
        return done

    def _wait(self: Any, step_run: Any) -> Any:
        status = wait(self, step_run)
        sub = self._locate(step_run)
        if sub is not None:  # the pod the Job controller named (one pod per step here)
            names = sorted(pod["metadata"]["name"] for pod, _ in self._pods(sub))
            pods[step_run.name] = names[0] if names else ""
        return status

    PodWatch._apply = _apply  # type: ignore[method-assign]
    LogFollower.join = _join  # type: ignore[method-assign]
    K8sStepOperator.wait = _wait  # type: ignore[method-assign]


def install(kind: str) -> tuple[list, list, dict]:
    from zenml.orchestrators.step_launcher import StepLauncher

    launcher_records: list = []
    operator_records: list = []
    captured: dict = {}
    original = StepLauncher._run_step_with_step_operator

    def run_with_operator(self: Any, *args: Any, **kwargs: Any) -> Any:
        start, started = time.time(), time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            launcher_records.append(
                {"step": self._invocation_id, "start": start, "orchestrator_s": time.perf_counter() - started}
            )

    StepLauncher._run_step_with_step_operator = run_with_operator  # type: ignore[method-assign]

    if kind == "k8s":
        from k8s_step_operator.step_operator import K8sStepOperator as cls

        _trace_k8s(captured)
    elif kind == "builtin":
        from zenml.integrations.kubernetes.flavors import KubernetesStepOperatorConfig
        from zenml.integrations.kubernetes.step_operators import KubernetesStepOperator as cls

        KubernetesStepOperatorConfig.is_remote = property(lambda self: False)  # type: ignore[assignment]
        cls.validator = property(lambda self: None)  # type: ignore[assignment]
    else:
        from k8sbench.subprocess_operator import SubprocessStepOperator as cls
    for method in ("submit_with_allocation", "wait", "cleanup_step_submission"):
        _timed(cls, method, operator_records, captured)
    return launcher_records, operator_records, captured


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stack", required=True)
    parser.add_argument("--operator", required=True)
    parser.add_argument("--kind", choices=("k8s", "builtin", "subprocess"), required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--markers", required=True, help="directory for the steps' timing notes")
    args = parser.parse_args()

    from zenml.client import Client

    Client().activate_stack(args.stack)
    launcher, operator, captured = install(args.kind)
    os.makedirs(args.markers, exist_ok=True)
    pipe = build_pipeline(args.operator, args.steps, args.seconds, args.markers)
    t0 = time.time()
    run = pipe()
    wall = time.time() - t0
    run = Client().get_pipeline_run(run.id)
    zenml_steps = {
        name: (s.end_time - s.start_time).total_seconds() if s.start_time and s.end_time else None
        for name, s in run.steps.items()
    }
    markers = {}
    for name in run.steps:
        try:
            with open(os.path.join(args.markers, f"{args.operator}-{name}.json")) as fh:
                markers[name] = json.load(fh)
        except (OSError, ValueError):
            markers[name] = None
    result = {
        "kind": args.kind,
        "markers": markers,
        "operator": args.operator,
        "status": run.status.value,
        "run_wall_s": wall,
        "launcher": launcher,
        "operator_calls": operator,
        "zenml_step_durations_s": zenml_steps,
        **captured,
    }
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2, default=str)
    print(f"RUN-STATUS {run.status.value}", flush=True)
    return 0 if run.status.value == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())

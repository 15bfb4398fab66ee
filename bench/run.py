#!/usr/bin/env python
"""Benchmark the ``k8s`` step operator against ZenML 0.98's built-in ``kubernetes`` one.

One command runs everything on a fresh local control plane (started here, stopped at
the end, nothing left behind) and writes ``bench/RESULTS.md`` plus the raw numbers in
``bench/results.json``::

    ~/.cache/k8s-step-operator/venv/bin/python bench/run.py            # full run
    ~/.cache/k8s-step-operator/venv/bin/python bench/run.py --quick    # smoke run, a few minutes
    ~/.cache/k8s-step-operator/venv/bin/python bench/run.py --only completion,requests

Sections (``--only``): completion (1), e2e (2), requests (3), scale (4), resource (5),
failure (an unpullable image). ``--report-only`` re-renders RESULTS.md from results.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.metadata as md
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from k8sbench import report  # noqa: E402
from k8sbench.common import Admin, percentile, proc_stats  # noqa: E402

SECTIONS = ("completion", "e2e", "requests", "scale", "resource", "failure")
DROP_CACHES = Path("/proc/sys/vm/drop_caches")
UNPULLABLE_IMAGE = "registry.k8sso.local/k8sso/k8sbench-no-such-image:1"  # a real pull, answered 404 by the local registry


# ------------------------------------------------------------------------------- plan
def plan(args: argparse.Namespace) -> dict[str, Any]:
    """Every parameter of the run (the full run, or the --quick smoke run)."""
    q = args.quick
    scales = [int(n) for n in args.scale.split(",")] if args.scale else ([1, 10] if q else [1, 10, 100, 500])
    return {
        "quick": q,
        "seed": args.seed,
        "completion": {"steps": 5 if q else 20, "min_s": 1.0, "max_s": 3.0 if q else 8.0},
        "e2e": {"rounds": 1 if q else 4, "steps_per_run": 2 if q else 5, "step_seconds": 2.0},
        "requests": {"steps": 1 if q else 5, "step_seconds": 10.0 if q else 30.0, "idle_seconds": 5.0 if q else 30.0, "settle_seconds": 3.0},
        "scale": {"n": scales, "step_seconds": 8.0 if q else 20.0, "timeout": 300.0, "timeout_per_step": 1.5,
                  # runs of one step / up to 100 steps / more: a run's submission time moves by more than the
                  # operators differ (on 2 cores it is set by how busy the kubelets are starting earlier pods)
                  # (one thread: its runs spread most, since every submit waits on the busy apiserver)
                  "repeats_one": 1 if q else 5, "repeats": 1 if q else 5, "repeats_one_thread": 7,
                  "repeats_large": 1 if q else 3,
                  "submit_threads": 10, "light": True,
                  # the same small explicit requests for both operators: the built-in's default 400Mi would
                  # decide how many pods fit, not the operators
                  "requests": {"cpu": "2m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
        "resource": {"trials": 4 if q else 20},
        "failure": {"timeout": 20.0 if q else 60.0, "image": UNPULLABLE_IMAGE},
        "node_nice": args.node_nice,
    }


# ----------------------------------------------------------------------------- context
class Bench:
    """The run's state: tmp dir, cluster, environment for child processes, results."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.plan = plan(args)
        self.operators = [o for o in args.operators.split(",") if o]
        self.cluster: Any = None
        self.admin: Admin | None = None
        self.idle_cores = 0.0  # the cluster's own CPU use when nothing runs (measured once it is up)
        self.results: dict[str, Any] = {}
        self.commands: list[str] = []
        self.child: subprocess.Popen | None = None
        self.exit_dir = tmp / "exit"
        self.exit_dir.mkdir()
        self.logs = tmp / "logs"
        self.logs.mkdir()

    @property
    def kubeconfig(self) -> str:
        return str(self.cluster.kubeconfig)

    def child_env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(BENCH), env.get("PYTHONPATH", "")) if p)
        env["KUBECONFIG"] = self.kubeconfig
        env["ZENML_CONFIG_PATH"] = str(self.tmp / "zenml-workers")
        env["ZENML_ANALYTICS_OPT_IN"] = "false"
        env["ZENML_LOGGING_COLORS_DISABLED"] = "true"
        env["ZENML_ENABLE_RICH_TRACEBACK"] = "false"
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.update(extra)
        return env

    def namespace(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:5]}"
        assert self.admin is not None
        self.admin.create_namespace(name)
        return name

    def retire(self, namespace: str, timeout: float = 600.0) -> None:
        """Delete a finished row's namespace and wait until it is gone: what one operator leaves (the
        built-in keeps every pod and Job) must not weigh on the next row's nodes and API server."""
        assert self.admin is not None
        self.admin.delete_namespace(namespace, wait=timeout)
        if self.admin.exists(f"/api/v1/namespaces/{namespace}"):
            raise TimeoutError(f"namespace {namespace} still there {timeout:.0f} s after its deletion")

    def run_child(self, argv: list[str], log_name: str, timeout: float, cwd: Path | None = None, env: dict | None = None) -> int:
        """Run a child in its own process group; kill that group on timeout."""
        log_path = self.logs / f"{log_name}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env or self.child_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            self.child = proc
            try:
                return proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return -9
            finally:
                self.kill_child()

    def kill_child(self) -> None:
        """Kill the running child's process group (workers and pipeline drivers start their own)."""
        proc, self.child = self.child, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()

    def worker(self, section: str, params: dict, label: str, timeout: float = 1800.0) -> dict:
        """``python -m k8sbench.worker SECTION PARAMS OUT`` in a fresh process."""
        params = {"kubeconfig": self.kubeconfig, "exit_dir": str(self.exit_dir), **params}
        params_path = self.tmp / f"{label}.params.json"
        out_path = self.tmp / f"{label}.out.json"
        params_path.write_text(json.dumps(params))
        started = time.time()
        code = self.run_child([sys.executable, "-m", "k8sbench.worker", section, str(params_path), str(out_path)], label, timeout)
        try:
            result = json.loads(out_path.read_text())
        except (OSError, ValueError):
            result = {"ok": False, "error": f"worker exited {code} without a result"}
        if not result.get("ok"):
            result["log_tail"] = tail(self.logs / f"{label}.log")
        result["wall_s"] = time.time() - started
        status = "ok" if result.get("ok") else f"FAILED: {result.get('error')}"
        print(f"  {label}: {status} ({result['wall_s']:.0f} s)", flush=True)
        return result

    def settle(self, timeout: float = 120.0, quiet_s: float = 60.0, drop: bool = False) -> dict:
        """Wait until no bench pod is still running on the nodes (finished work only), then (``drop``: after
        :func:`drop_caches`) until the machine is quiet (:func:`quiet_machine`, at most ``quiet_s``). Returns
        how long that took and the last reading."""
        assert self.admin is not None
        t0 = time.monotonic()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            pods = self.admin.get("/api/v1/pods").get("items", [])
            busy = [
                p for p in pods
                if p["metadata"]["namespace"].startswith("b-") and (p.get("status") or {}).get("phase") in ("Pending", "Running")
            ]
            if not busy:
                break
            time.sleep(0.5)
        # the kernel frees what earlier pods left; the quiet wait covers that work
        memcgs = {"memory_cgroups": drop_caches()} if drop else {}
        busy = quiet_machine(min(quiet_s, max(0.0, deadline - time.monotonic())), below=self.idle_cores + 0.15)
        return {"waited_s": round(time.monotonic() - t0, 1), "busy_cores": round(busy, 3), **memcgs}


def machine_busy(seconds: float) -> float:
    """The machine's CPU use over ``seconds``, in cores (``/proc/stat``: all but idle and iowait)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    cores = os.cpu_count() or 1
    return (busy1 - busy0) / max(1, total1 - total0) * cores


def memory_cgroups() -> int | None:
    """How many memory cgroups the kernel holds (``/proc/cgroups``), removed ones still charged included."""
    for line in Path("/proc/cgroups").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "memory":
            return int(fields[2])
    return None


def drop_caches() -> dict:
    """Drop the page cache and reclaimable slab (``/proc/sys/vm/drop_caches``), so that each scale run starts
    on the same kernel state. A pod's memory cgroup stays allocated after the kubelet removes it for as long as
    pages it charged are cached (a "dying" cgroup); a few thousand pods leave tens of thousands, and this
    machine's kernel lives across sessions, so a run would otherwise start on what every run since boot
    left. Returns the count before and after (``after`` is None when the file cannot be written: not root)."""
    before = memory_cgroups()
    try:
        os.sync()
        DROP_CACHES.write_text("3")
    except OSError:
        return {"before": before, "after": None}
    return {"before": before, "after": memory_cgroups()}


def quiet_machine(timeout: float, below: float, window: float = 2.0) -> float:
    """Wait (at most ``timeout``) until the machine uses less than ``below`` cores over two ``window``
    seconds in a row: what the last row started (containerd tearing sandboxes down, garbage collection)
    must not run in the next row's window. Returns the last reading."""
    deadline = time.monotonic() + timeout
    previous, busy = machine_busy(window), machine_busy(window)
    while max(previous, busy) >= below and time.monotonic() < deadline:
        previous, busy = busy, machine_busy(window)
    return busy


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ----------------------------------------------------------------------------- sections
def section_completion(b: Bench) -> dict:
    p = b.plan["completion"]
    rng = random.Random(b.plan["seed"])
    durations = [round(rng.uniform(p["min_s"], p["max_s"]), 3) for _ in range(p["steps"])]
    out: dict[str, Any] = {"durations": durations}
    variants = [(op, op, {}) for op in b.operators]
    if "k8s" in b.operators:
        variants.append(("k8s-nologs", "k8s", {"stream_logs": False}))
    for label, kind, config in variants:
        ns = b.namespace(f"b-completion-{label}")
        out[label] = b.worker(
            "completion",
            {"operator": kind, "namespace": ns, "durations": durations, "config": config},
            f"completion-{label}",
        )
        b.settle()
        b.retire(ns)
    return out


def section_requests(b: Bench) -> dict:
    p = b.plan["requests"]
    out: dict[str, Any] = {}
    variants = [(op, op, {}) for op in b.operators]
    if "k8s" in b.operators:
        variants.append(("k8s-nologs", "k8s", {"stream_logs": False}))
    for label, kind, config in variants:
        b.settle()
        ns = b.namespace(f"b-requests-{label}")
        out[label] = b.worker(
            "requests",
            {
                "operator": kind,
                "namespace": ns,
                "config": config,
                "steps": p["steps"],
                "seconds": p["step_seconds"],
                "idle_seconds": p["idle_seconds"],
                "settle_seconds": p["settle_seconds"],
            },
            f"requests-{label}",
        )
        b.retire(ns)
    return out


def section_scale(b: Bench) -> dict:
    """Each N with ZenML's dynamic-pipeline submit pool (10 threads); the largest N also from one thread."""
    p = b.plan["scale"]
    runs = []
    cases = [(n, p["submit_threads"]) for n in sorted(p["n"])]
    if not b.plan["quick"]:
        one = min(max(p["n"]), 100)
        # the heaviest case goes last: the kubelets tear its hundreds of sandboxes down for minutes after
        # its namespace is gone, which would weigh on whatever ran next
        cases.insert(sum(1 for n, _ in cases if n <= one), (one, 1))
    # a row's figures move from run to run on a cluster this small: each case runs `repeats_one` times for one
    # step, `repeats` times up to 100 steps (`repeats_one_thread` from one thread), `repeats_large` times above
    # (the report takes the median of each figure and lists every run)
    rounds = [(n, threads, k) for n, threads in cases for k in range(repeats(p, n, threads))]
    for i, (n, threads, repeat) in enumerate(rounds):
        # each row starts on an empty namespace set: the previous row's is deleted and gone; the order of the
        # operators alternates from row to row, so neither always runs on a cluster the other just used
        for op in (b.operators if i % 2 == 0 else list(reversed(b.operators))):
            settled = b.settle(timeout=600.0, quiet_s=180.0, drop=True)
            ns = b.namespace(f"b-scale-{op}-{n}")
            timeout = max(p["timeout"], p["timeout_per_step"] * n)
            result = b.worker(
                "scale",
                {"operator": op, "namespace": ns, "n": n, "seconds": p["step_seconds"], "timeout": timeout,
                 "submit_threads": threads, "light": p["light"], "requests": p["requests"], "limits": p["limits"]},
                f"scale-{op}-{n}-t{threads}-r{repeat}",
                timeout=timeout + 900,
            )
            runs.append({"operator": op, "n": n, "submit_threads": threads, "repeat": repeat, "settled": settled, **result})
            b.retire(ns)
    return {"runs": runs}


def repeats(p: dict, n: int, threads: int) -> int:
    """How many times the scale case of ``n`` steps from ``threads`` threads runs."""
    if n == 1:
        return int(p.get("repeats_one", p["repeats"]))
    if threads == 1:
        return int(p.get("repeats_one_thread", p["repeats"]))
    return int(p["repeats"] if n <= 100 else p.get("repeats_large", 1))


def section_failure(b: Bench) -> dict:
    p = b.plan["failure"]
    out: dict[str, Any] = {}
    for op in b.operators:
        ns = b.namespace(f"b-failure-{op}")
        out[op] = b.worker(
            "failure", {"operator": op, "namespace": ns, "image": p["image"], "timeout": p["timeout"]}, f"failure-{op}"
        )
    return out


def section_resource(b: Bench) -> dict:
    p = b.plan["resource"]
    ns = b.namespace("b-resource")
    return b.worker("resource", {"namespace": ns, "trials": p["trials"], "seed": b.plan["seed"]}, "resource")


def section_e2e(b: Bench) -> dict:
    """Real pipelines: the same chain of 2 s steps on the baseline, our operator and ZenML's."""
    p = b.plan["e2e"]
    root = b.tmp / "zenml-repo"  # holds only the pipeline file: ZenML ships it as the code archive
    root.mkdir()
    state = b.tmp / "e2e"
    state.mkdir()
    ns = b.namespace("b-e2e")
    env = b.child_env(
        ZENML_CONFIG_PATH=str(b.tmp / "zenml-e2e"), K8SBENCH_SUBPROCESS_LOG=str(state / "subprocess.jsonl"), COLUMNS="200"
    )
    code = b.run_child(
        [sys.executable, "-m", "k8sbench.zenml_setup", str(root), ns, b.kubeconfig], "e2e-setup", 600, cwd=root, env=env
    )
    if code != 0:
        return {"ok": False, "error": f"ZenML setup failed ({code})", "log_tail": tail(b.logs / "e2e-setup.log")}
    shutil.copy(BENCH / "k8sbench" / "pipeline_driver.py", root / "pipeline_driver.py")
    names = {"subprocess": "bench-subprocess", "k8s": "bench-k8s", "builtin": "bench-builtin"}
    variants = ["subprocess", *[o for o in b.operators if o in names]]
    runs: dict[str, list] = {v: [] for v in variants}
    for rnd in range(p["rounds"]):
        order = variants if rnd % 2 == 0 else list(reversed(variants))
        for kind in order:
            b.settle()
            out = state / f"{kind}-{rnd}.json"
            label = f"e2e-{kind}-{rnd}"
            started = time.time()
            code = b.run_child(
                [
                    sys.executable, "pipeline_driver.py", "--stack", f"stack-{names[kind]}", "--operator", names[kind],
                    "--kind", kind, "--steps", str(p["steps_per_run"]), "--seconds", str(p["step_seconds"]),
                    "--out", str(out), "--markers", str(b.tmp / "zenml-e2e" / "markers"),
                ],
                label, 1800, cwd=root, env=env,
            )
            try:
                result = json.loads(out.read_text())
            except (OSError, ValueError):
                result = {"status": "no result", "exit_code": code, "log_tail": tail(b.logs / f"{label}.log")}
            print(f"  {label}: {result.get('status')} ({time.time() - started:.0f} s)", flush=True)
            runs[kind].append(result)
    plain = []
    try:
        for line in (state / "subprocess.jsonl").read_text().splitlines():
            plain.append(json.loads(line))
    except OSError:
        pass
    return {"ok": True, "step_seconds": p["step_seconds"], "runs": runs, "plain_subprocess": plain, "analysis": analyse_e2e(runs, plain)}


E2E_PARTS = ("before_submit", "launch", "in_process", "atexit_to_wait_return", "after_wait")


def analyse_e2e(runs: dict[str, list], plain: list[dict]) -> dict:
    """Per variant: the orchestrator's view, the overhead two ways, and where the time went.

    * ``overhead_s`` (the issue's definition): median orchestrator view − median plain-subprocess
      time of the entrypoint command (the baseline variant's Popen → exit).
    * ``paired_overhead_s``: per step, orchestrator view − the entrypoint process's own time
      (process start from /proc → the step's atexit hook), then the median; and
      ``paired_over_baseline_s`` = that minus the baseline's. It removes the run-to-run jitter of
      ZenML's start-up inside the process, which every variant pays.
    """
    def med(xs: list) -> float | None:
        xs = [x for x in xs if x is not None]
        return percentile(xs, 50) if xs else None

    plain_s = [r["subprocess_s"] for r in plain if r.get("exit_code") == 0]
    t_plain = med(plain_s)
    out: dict[str, Any] = {"plain_subprocess_s": t_plain, "plain_subprocess_all": plain_s}
    atexit_to_exit: list[float] = []
    for kind, results in runs.items():
        orch, paired = [], []
        parts: dict[str, list] = {k: [] for k in E2E_PARTS}
        trace: dict[str, list] = {"atexit_to_terminated_seen": [], "terminated_seen_to_wait_return": [], "log_join": []}
        for res in results:
            if res.get("status") != "completed":
                continue
            calls: dict[tuple[str, str], dict] = {(c["method"], c["step"]): c for c in res.get("operator_calls", [])}
            for rec in res.get("launcher", []):
                step = rec["step"]
                orch.append(rec["orchestrator_s"])
                sub, wait = calls.get(("submit_with_allocation", step)), calls.get(("wait", step))
                mark = (res.get("markers") or {}).get(step)
                if not (sub and wait and mark):
                    continue
                wait_end = wait["start"] + wait["seconds"]
                start, exit_ = mark.get("process_start"), mark.get("process_exit")
                parts["before_submit"].append(sub["start"] - rec["start"])
                parts["after_wait"].append(rec["start"] + rec["orchestrator_s"] - wait_end)
                if start is not None:
                    parts["launch"].append(start - sub["start"])
                if exit_ is not None:
                    parts["atexit_to_wait_return"].append(wait_end - exit_)
                if start is not None and exit_ is not None:
                    parts["in_process"].append(exit_ - start)
                    paired.append(rec["orchestrator_s"] - (exit_ - start))
                pod = (res.get("step_pods") or {}).get(step)
                seen = (res.get("pod_terminated_seen") or {}).get(pod) if pod else None
                if seen is not None and exit_ is not None:
                    trace["atexit_to_terminated_seen"].append(seen - exit_)
                    trace["terminated_seen_to_wait_return"].append(wait_end - seen)
                joins = [j["seconds"] for j in res.get("log_joins") or [] if j.get("pod") == pod]
                if joins:
                    trace["log_join"].append(joins[0])
                if kind == "subprocess" and exit_ is not None:
                    # the baseline knows the real exit: the Popen.wait() return in the same run
                    real = [r.get("exited_at") for r in plain if r.get("step") == step and r.get("exited_at")]
                    real = [x for x in real if wait["start"] <= x <= wait_end + 0.5]
                    if real:
                        atexit_to_exit.append(real[0] - exit_)
        t = med(orch)
        out[kind] = {
            "steps": len(orch),
            "orchestrator_s": t,
            "orchestrator_all": orch,
            "overhead_s": None if t is None or t_plain is None else t - t_plain,
            "paired_overhead_s": med(paired),
            "paired_overhead_all": paired,
            "parts_median_s": {k: med(v) for k, v in parts.items()},
        }
        if any(trace.values()):
            out[kind]["trace_median_s"] = {k: med(v) for k, v in trace.items()}
            out[kind]["trace_all"] = trace
    out["atexit_to_exit_s"] = med(atexit_to_exit)
    base = (out.get("subprocess") or {}).get("paired_overhead_s")
    for kind in runs:
        if kind != "subprocess" and base is not None and out[kind].get("paired_overhead_s") is not None:
            out[kind]["paired_over_baseline_s"] = out[kind]["paired_overhead_s"] - base
    return out


RUNNERS: dict[str, Callable[[Bench], dict]] = {
    "completion": section_completion,
    "e2e": section_e2e,
    "requests": section_requests,
    "scale": section_scale,
    "resource": section_resource,
    "failure": section_failure,
}


# ------------------------------------------------------------------------- machine, versions
INOTIFY = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_FOR_RUN = 8192


NODE_NICE = 10


def nice_node_side(cluster: Any, nice: int = NODE_NICE) -> dict:
    """Run each node's kubelet and containerd, and everything they start (shims, runc, containers), at
    ``nice``: the control plane (etcd, apiserver, scheduler, controllers) and the orchestrator get the CPU
    first, as on a cluster whose control plane has machines of its own. Threads and children inherit the
    value, so new pods run at it too. Returns how many processes and threads were set."""
    roots = {proc.pid for name, proc in cluster.procs.items() if name.startswith(("containerd-", "kubelet-"))}
    children: dict[int, list[int]] = {}
    for pid, comm, fields in proc_stats():
        children.setdefault(int(fields[1]), []).append(pid)
        if comm.startswith("containerd-shim"):  # a shim re-parents itself away from containerd
            roots.add(pid)
    todo, seen, threads = list(roots), set(), 0
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, []))
        for task in Path(f"/proc/{pid}/task").glob("*"):  # setpriority sets one thread on Linux
            try:
                os.setpriority(os.PRIO_PROCESS, int(task.name), nice)
                threads += 1
            except (OSError, ValueError):
                pass
    return {"nice": nice, "processes": len(seen), "threads": threads}


def raise_inotify_instances() -> dict:
    """A kubelet follows each container log with an inotify instance, and this machine allows 128 per user:
    with more log streams than that at once the kubelet breaks streams off ("failed to create fsnotify
    watcher: too many open files"). kind's documentation has clusters raise the limit; the run does, and
    puts it back at the end."""
    before = int(INOTIFY.read_text())
    if before < INOTIFY_FOR_RUN:
        INOTIFY.write_text(str(INOTIFY_FOR_RUN))
    return {"before": before, "during": max(before, INOTIFY_FOR_RUN)}


def restore_inotify_instances(inotify: dict) -> None:
    if inotify["before"] < INOTIFY_FOR_RUN:
        INOTIFY.write_text(str(inotify["before"]))


def machine() -> dict:
    mem_kib = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    model = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "platform": platform.platform(),
        "load_average_start": os.getloadavg(),
    }


def versions(cluster: Any) -> dict:
    from k8sso_localcluster import build

    def v(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "not installed"

    git = {}
    try:
        git["commit"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout
        git["uncommitted_changes"] = bool(dirty.strip())
    except OSError:
        pass
    server = {}
    try:
        server = json.loads(cluster.get("/version"))
    except Exception:  # noqa: BLE001
        pass
    return {
        "python": platform.python_version(),
        "zenml": v("zenml"),
        "kubernetes_python_client": v("kubernetes"),
        "k8s_step_operator": v("k8s-step-operator"),
        "git": git,
        "kube_apiserver": server.get("gitVersion", build.KUBERNETES_VERSION),
        "etcd": build.ETCD_VERSION,
    }


def code_fingerprint() -> dict:
    """What a resumed run must share with the run it goes on with: the committed files that are measured or
    measure (operator, local cluster, bench; not the report's wording), and no uncommitted change to them."""
    paths = ["src", "localcluster", "bench/run.py", "bench/k8sbench"]
    listing = subprocess.run(["git", "-C", str(REPO), "ls-files", "-s", "--", *paths],
                             capture_output=True, text=True, check=True).stdout
    kept = "\n".join(line for line in listing.splitlines() if not line.endswith("bench/k8sbench/report.py"))
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--", *paths],
                           capture_output=True, text=True, check=True).stdout
    return {"files": hashlib.sha256(kept.encode()).hexdigest()[:16], "uncommitted_changes": bool(dirty.strip())}


def resumable(path: Path, code: dict, plan: dict) -> dict:
    """The run in ``path`` if this one may go on with it (ValueError saying why not)."""
    try:
        prior = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"--resume: no run to go on with in {path} ({exc})") from exc
    if code["uncommitted_changes"] or prior.get("code", {}).get("uncommitted_changes"):
        raise ValueError("--resume: only a run of committed code can be resumed, with committed code")
    if prior.get("code", {}).get("files") != code["files"]:
        raise ValueError(f"--resume: {path} was measured on other code (operator, local cluster or bench changed)")
    if prior.get("plan") != json.loads(json.dumps(plan)):
        raise ValueError(f"--resume: {path} was run with another plan (--quick, --scale, --seed, --node-nice)")
    return prior


def bench_nodes(max_steps: int = 100) -> list:
    """The default nodes, plus plain nodes enough for ``max_steps`` pods at once: a kubelet here takes
    at most 250 pods (its pod range is a /24), the default 110 raised.

    CPU and memory are this machine's, as each kubelet reports them; the scale steps ask for the
    same small explicit requests on both operators.
    """
    from k8sso_localcluster.controlplane import default_nodes
    from k8sso_localcluster.nodes import NodeSpec

    per_node = 250
    nodes = default_nodes()
    for node in nodes:
        if node.name == "local-cpu":
            node.max_pods = per_node
    extra = max(0, -(-(max_steps + 20) // per_node) - 1)  # room for the cluster's own pods
    nodes += [NodeSpec(name=f"local-cpu-{i + 2}", max_pods=per_node) for i in range(extra)]
    return nodes


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    head, _, rest = (__doc__ or "").partition("\n")
    parser = argparse.ArgumentParser(description=head, epilog=rest, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts and short steps (a smoke run)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {','.join(SECTIONS)}")
    parser.add_argument("--operators", default="k8s,builtin", help="k8s (ours), builtin (ZenML's kubernetes)")
    parser.add_argument("--scale", default="", help="step counts for the scale section (default 1,10,100,500, and 100 from one thread; quick 1,10)")
    parser.add_argument("--seed", type=int, default=20251122)
    parser.add_argument("--node-nice", type=int, default=NODE_NICE,
                        help=f"nice value of the kubelets, containerd and the pods (default {NODE_NICE}; 0: as started)")
    parser.add_argument("--out-dir", default=str(BENCH), help="where RESULTS.md and results.json go")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the tmp dir (logs, raw files) for debugging")
    parser.add_argument("--report-only", action="store_true", help="re-render RESULTS.md from results.json")
    parser.add_argument("--resume", action="store_true",
                        help="go on with the run in --out-dir: run only its missing sections (same code and plan)")
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir)
    if args.report_only:
        data = json.loads((out_dir / "results.json").read_text())
        (out_dir / "RESULTS.md").write_text(report.render(data))
        print(f"wrote {out_dir / 'RESULTS.md'}")
        return 0
    sections = [s for s in args.only.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {sorted(unknown)}")
    prior = None
    if args.resume:
        try:
            prior = resumable(out_dir / "results.json", code_fingerprint(), plan(args))
        except ValueError as exc:
            parser.error(str(exc))
        sections = [s for s in sections if not report.ok(prior["sections"].get(s))]
        print(f"k8sbench: resuming {out_dir / 'results.json'}: sections left {sections or 'none'}", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="k8sbench-"))
    # Nothing below (nor the pods, which mount this ZenML config directory) touches the user's ZenML
    # state; ZenML's step entrypoint creates /app (in the bench's in-process steps), removed at the end if new.
    os.environ["ZENML_CONFIG_PATH"] = str(tmp / "zenml-bench")
    os.environ["ZENML_ANALYTICS_OPT_IN"] = "false"
    os.environ.pop("KUBECONFIG", None)
    app_existed = os.path.exists("/app")
    b = Bench(args, tmp)

    def on_signal(signum: int, _frame: Any) -> None:  # SIGTERM/SIGHUP: clean up like Ctrl-C
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    started = dt.datetime.now(dt.timezone.utc)
    command = " ".join(["python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    data: dict[str, Any] = prior or {
        "started": started.isoformat(timespec="seconds"),
        "command": command,
        "python_executable": sys.executable,
        "plan": b.plan,
        "code": code_fingerprint(),
        "machine": machine(),
        "sections": {},
    }
    sitting: dict[str, Any] = {"started": started.isoformat(timespec="seconds"), "command": command, "sections": sections}
    data.setdefault("sittings", []).append(sitting)
    if prior is not None:  # this sitting's machine; the first sitting's stays in data["machine"]
        sitting["machine"] = machine()
    from k8sso_localcluster.controlplane import LocalCluster

    here = sitting.get("machine") or data["machine"]
    here["memory_cgroups_at_start"] = drop_caches()  # what earlier runs on this machine left
    print(f"k8sbench: tmp {tmp}; starting the local cluster", flush=True)
    inotify = raise_inotify_instances()
    here["inotify_max_user_instances"] = inotify
    try:
        scaled = "scale" in sections or "scale" in data["sections"]  # a resumed run's sittings: the same nodes
        with LocalCluster(nodes=bench_nodes(max(b.plan["scale"]["n"]) if scaled else 1)) as cluster:
            b.cluster = cluster
            b.admin = Admin(cluster.kubeconfig)
            sitting["versions"] = versions(cluster)
            data.setdefault("versions", sitting["versions"])
            here["node_side"] = nice_node_side(cluster, b.plan["node_nice"])
            time.sleep(10.0)  # the nodes' first syncs and the controllers' first lists are over
            b.idle_cores = here["idle_cluster_cores"] = round(min(machine_busy(5.0), machine_busy(5.0)), 3)
            print(f"k8sbench: the idle cluster uses {b.idle_cores} cores", flush=True)
            for section in sections:
                print(f"k8sbench: section {section}", flush=True)
                t0 = time.time()
                try:
                    data["sections"][section] = RUNNERS[section](b)
                except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others
                    data["sections"][section] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                    print(f"  section {section} failed: {exc}", flush=True)
                data["sections"][section]["section_wall_s"] = time.time() - t0
                write(out_dir, data)  # keep what we have after every section
            b.settle(30)
    finally:
        b.kill_child()
        data["finished"] = sitting["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        here["load_average_end"] = os.getloadavg()
        restore_inotify_instances(inotify)
        write(out_dir, data)
        clean_app(app_existed)
        if args.keep_tmp:
            print(f"k8sbench: kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"k8sbench: wrote {out_dir / 'RESULTS.md'} and {out_dir / 'results.json'}", flush=True)
    return 0


def clean_app(app_existed: bool) -> None:
    """ZenML's step entrypoint chdirs to /app and unpacks the code archive into /app/code; pods
    are processes on this machine, so that is the host's /app. Remove what the bench put there."""
    if not app_existed:
        shutil.rmtree("/app", ignore_errors=True)
        return
    driver = Path("/app/code/pipeline_driver.py")
    try:
        if driver.read_bytes() == (BENCH / "k8sbench" / "pipeline_driver.py").read_bytes():
            driver.unlink()
    except OSError:
        pass


def write(out_dir: Path, data: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(data, indent=1, default=str))
    try:
        (out_dir / "RESULTS.md").write_text(report.render(data))
    except Exception as exc:  # noqa: BLE001 - the raw numbers are safe in results.json
        print(f"k8sbench: could not render RESULTS.md: {type(exc).__name__}: {exc}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

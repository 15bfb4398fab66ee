"""One measurement in a fresh process: ``python -m k8sbench.worker SECTION PARAMS.json OUT.json``.

Sections: ``completion`` (measure 1), ``requests`` (measure 3), ``scale`` (measure 4),
``failure`` (an unpullable image: does ``wait()`` ever return?). Measure 2 runs real
pipelines (``k8sbench.pipeline_driver``) and measure 5 is ``k8sbench.resource``.

Every section drives an operator through the calls ZenML's step launcher makes:
``submit_with_allocation`` → ``wait`` → ``cleanup_step_submission``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable

from .common import (
    Admin,
    RequestLog,
    RssSampler,
    component_cpu,
    diff,
    mib,
    request_totals,
    row_name,
    summary,
)
from .gauges import Gauges
from .operators import (
    IMAGE,
    fan_out_snapshot,
    light_command,
    light_image,
    make_operator,
    make_step,
    read_exit,
    step_command,
    submit,
    warm_up,
)

STEP_ENV = {"BENCH_STEP": "1"}


# ----------------------------------------------------------------------------- pod events
class PodEvents:
    """When our shared PodWatch received each event (wraps ``PodWatch._apply``; read-only)."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str, str, bool]] = []
        self._lock = threading.Lock()

    def install(self) -> "PodEvents":
        from k8s_step_operator.kube.podwatch import PodWatch

        original = PodWatch._apply
        events = self

        def _apply(watch: Any, kind: str, obj: dict) -> None:
            now = time.time()
            status = obj.get("status") or {}
            terminated = any("terminated" in (cs.get("state") or {}) for cs in status.get("containerStatuses") or [])
            with events._lock:
                events.events.append((now, obj["metadata"]["name"], kind, status.get("phase", ""), terminated))
            original(watch, kind, obj)

        PodWatch._apply = _apply  # type: ignore[method-assign]
        return self

    def finished_at(self, pod: str) -> float | None:
        """First time an event showed the pod's container terminated (or the pod finished)."""
        with self._lock:
            for t, name, kind, phase, terminated in self.events:
                if name == pod and (terminated or phase in ("Succeeded", "Failed") or kind == "DELETED"):
                    return t
        return None


def pod_name(kind: str, operator: Any, step_run: Any) -> str | None:
    """The name the Job controller gave our step's pod (None before it exists, or for the built-in)."""
    if kind == "k8s":
        from k8s_step_operator.jobs import JOB_NAME_LABEL

        sub = operator._known.get(str(step_run.id))
        pods = operator._watch(sub.namespace).select(JOB_NAME_LABEL, sub.job) if sub else []
        return min(p["metadata"]["name"] for p, _ in pods) if pods else None
    return None


def status_value(status: Any) -> str:
    return getattr(status, "value", str(status))


def wait_for_exit_file(path: str, timeout: float = 3.0) -> float | None:
    deadline = time.monotonic() + timeout
    while True:
        t = read_exit(path)
        if t is not None or time.monotonic() > deadline:
            return t
        time.sleep(0.02)


# ------------------------------------------------------------------ 1. completion detection
def completion(p: dict) -> dict:
    """Sequential steps; per step: step exit (its own clock) → ``wait()`` returns."""
    kind = p["operator"]
    requests = RequestLog().install()
    events = PodEvents().install() if kind == "k8s" else None
    op = make_operator(kind, p["namespace"], p["kubeconfig"], p.get("config"), p.get("exit_dir"))
    warm_up(kind, op)
    exit_dir = Path(p["exit_dir"])
    steps = []
    for i, seconds in enumerate(p["durations"]):
        info, step_run = make_step(f"detect{i}", run_name=f"completion-{kind}-{i}")
        exit_file = str(exit_dir / f"completion-{kind}-{i}-{uuid.uuid4().hex[:6]}")
        mark = requests.mark()
        t_submit = time.time()
        submit(op, info, step_command(exit_file, seconds), STEP_ENV)
        t_submitted = time.time()
        status = op.wait(step_run)
        pod = pod_name(kind, op, step_run)
        t_return = time.time()
        op.cleanup_step_submission(step_run)
        t_exit = wait_for_exit_file(exit_file)
        rows = requests.rows(mark)
        record = {
            "step_seconds": seconds,
            "status": status_value(status),
            "submit_s": t_submitted - t_submit,
            "exit_after_submit_s": None if t_exit is None else t_exit - t_submit,
            "detection_s": None if t_exit is None else t_return - t_exit,
            "polls": rows.get(("LIST", "batch", "jobs", ""), 0),
            "requests": {row_name(r): n for r, n in sorted(rows.items())},
        }
        if events is not None and pod:
            t_event = events.finished_at(pod)
            if t_event is not None and t_exit is not None:
                record["exit_to_event_s"] = t_event - t_exit
                record["event_to_return_s"] = t_return - t_event
        steps.append(record)
        print(f"[completion {kind}] step {i}: {json.dumps(record)}", flush=True)
    detections = [s["detection_s"] for s in steps if s["detection_s"] is not None]
    out: dict[str, Any] = {"steps": steps, "detection": summary(detections)}
    if events is not None:
        out["exit_to_event"] = summary([s["exit_to_event_s"] for s in steps if "exit_to_event_s" in s])
        out["event_to_return"] = summary([s["event_to_return_s"] for s in steps if "event_to_return_s" in s])
    out["polls_per_step"] = summary([float(s["polls"]) for s in steps])
    return out


# ----------------------------------------------------------------------- 3. API requests
def _shared_watch_row(kind: str, row: tuple) -> bool:
    """Requests of our shared watch: its two reflectors, pods and Warning events (each one LIST, then one
    WATCH a minute, per namespace for all steps)."""
    return kind == "k8s" and row[2] in ("pods", "events") and row[1] == "" and row[3] == "" and row[0] in ("LIST", "WATCH")


def requests_per_step(p: dict) -> dict:
    """apiserver_request_total deltas around each step, attributed with a client-side request log."""
    kind = p["operator"]
    admin = Admin(p["kubeconfig"])
    requests = RequestLog().install()
    t_start = time.time()
    op = make_operator(kind, p["namespace"], p["kubeconfig"], p.get("config"), p.get("exit_dir"))
    warm_up(kind, op)
    if kind == "k8s":  # open the shared watch before any window: it is shared by every step
        op._watch(p["namespace"]).wait_synced(30)  # the operator's own (indexed) shared watch
    time.sleep(1.0)

    # Background: what the cluster's own components do in the same time without a step.
    before, t0 = request_totals(admin.metrics()), time.time()
    time.sleep(p["idle_seconds"])
    after, t1 = request_totals(admin.metrics()), time.time()
    background = diff(after, before)
    rate = {row: n / (t1 - t0) for row, n in background.items()}

    exit_dir = Path(p["exit_dir"])
    steps = []
    for i in range(p["steps"]):
        info, step_run = make_step(f"requests{i}", run_name=f"requests-{kind}-{i}")
        exit_file = str(exit_dir / f"requests-{kind}-{i}-{uuid.uuid4().hex[:6]}")
        mark = requests.mark()
        a, ta = request_totals(admin.metrics()), time.time()
        submit(op, info, step_command(exit_file, p["seconds"]), STEP_ENV)
        status = op.wait(step_run)
        op.cleanup_step_submission(step_run)
        time.sleep(p["settle_seconds"])  # asynchronous consequences: GC, final status writes, Job controller
        b, tb = request_totals(admin.metrics()), time.time()
        server = diff(b, a)
        client = requests.rows(mark)
        window = tb - ta
        steps.append({"status": status_value(status), "window_s": window, "server": server, "client": client})

    op_rows = {r for s in steps for r in s["client"]}
    own_rows = sorted(r for r in op_rows if not _shared_watch_row(kind, r))
    out_steps = []
    for s in steps:
        server, client, window = s["server"], s["client"], s["window_s"]
        expected_bg = {r: rate.get(r, 0.0) * window for r in set(server) | set(rate)}
        net = {r: server.get(r, 0) - expected_bg.get(r, 0.0) for r in expected_bg}
        by_row = {
            row_name(r): {"apiserver": round(net.get(r, 0.0), 2), "operator_log": client.get(r, 0)} for r in own_rows
        }
        # a step cannot cause fewer requests than none: a negative net is the idle rate's guess overshooting
        # for a request that comes on a timer, so only rows of at least half a request count
        step_related = {r: n for r, n in net.items() if not _housekeeping(r) and n >= 0.5}
        out_steps.append(
            {
                "status": s["status"],
                "window_s": window,
                # the operator's own requests: its client log, row by row checked against the apiserver
                "operator_requests": sum(client.get(r, 0) for r in own_rows),
                "apiserver_in_operator_rows": round(sum(net.get(r, 0.0) for r in own_rows), 2),
                "apiserver_confirms": all(net.get(r, 0.0) + 0.5 >= client.get(r, 0) for r in own_rows),
                "operator_rows": by_row,
                "all_clients_step_related": round(sum(step_related.values()), 2),
                "all_clients_rows": {row_name(r): round(n, 2) for r, n in sorted(step_related.items())},
            }
        )
    lifetime = time.time() - t_start
    shared = requests.rows()
    return {
        "step_seconds": p["seconds"],
        "steps": out_steps,
        "idle_window_s": t1 - t0,
        "background_per_minute": {row_name(r): round(v * 60, 2) for r, v in sorted(rate.items()) if v > 0},
        "operator_requests": summary([float(s["operator_requests"]) for s in out_steps]),
        "apiserver_in_operator_rows": summary([s["apiserver_in_operator_rows"] for s in out_steps]),
        "all_clients_step_related": summary([s["all_clients_step_related"] for s in out_steps]),
        "shared_watch": {
            "lifetime_s": lifetime,
            "requests": {row_name(r): n for r, n in sorted(shared.items()) if _shared_watch_row(kind, r)},
        },
    }


def _housekeeping(row: tuple) -> bool:
    """Periodic cluster chatter unrelated to a step: node heartbeats, watch re-establishment, the
    apiserver's own reconciliation of the ``kubernetes`` Service's endpoints (GET endpoints and
    endpointslices every 10 s) and informers' relists of Services."""
    return (
        row[2] in ("leases", "nodes", "endpoints", "endpointslices")
        or row[0] == "WATCH"
        or (row[0] == "LIST" and row[2] == "services")
    )


# ------------------------------------------------------------------------------ 4. scale
def cpu_pressure() -> float | None:
    """The share of the last 10 s in which some runnable task waited for a CPU (``/proc/pressure/cpu``,
    "some avg10", in %); None where the kernel has no PSI."""
    try:
        first = Path("/proc/pressure/cpu").read_text().split("\n", 1)[0]
    except OSError:
        return None
    fields = dict(f.split("=", 1) for f in first.split()[1:])
    return float(fields["avg10"])


def scale(p: dict) -> dict:
    """N steps submitted from ``submit_threads`` threads, then ``wait()`` on each from its own thread.

    ZenML's dynamic pipelines launch steps from a pool of ``ZENML_DYNAMIC_PIPELINE_WORKER_COUNT``
    (default 10) threads; ``submit_threads=1`` is one loop.
    """
    from concurrent.futures import ThreadPoolExecutor

    kind, n, pool = p["operator"], p["n"], p.get("submit_threads", 1)
    light = bool(p.get("light"))
    admin = Admin(p["kubeconfig"])
    requests = RequestLog().install()
    events = PodEvents().install() if kind == "k8s" else None
    config = dict(p.get("config") or {})
    if light:  # the same small explicit requests for both (the built-in would add 400Mi to each pod)
        config["pod_settings"] = {"resources": {"requests": dict(p["requests"]), "limits": dict(p["limits"])}}
        if kind == "k8s":
            config["log_prefix"] = True  # every line says whose it is, to check for cross-talk
    gauges = Gauges(p["kubeconfig"]).start()  # before the operator exists: its shared watch counts
    op = make_operator(kind, p["namespace"], p["kubeconfig"], config, p.get("exit_dir"))
    warm_up(kind, op)
    exit_dir = Path(p["exit_dir"])
    image = light_image() if light else None
    # what ZenML does before the run starts: ours runs its preflight here (dry runs, access reviews), so the
    # fan-out's submits need no dry run; the built-in lists its builds
    op.get_docker_builds(fan_out_snapshot("scale", image or IMAGE))
    steps = []
    for i in range(n):
        name = f"scale{i}"
        info, step_run = make_step(name, run_name=f"scale-{kind}-{n}", **({"image": image} if image else {}))
        exit_file = str(exit_dir / f"scale-{kind}-{n}-{i}-{uuid.uuid4().hex[:6]}")
        command = light_command(f"token-{name}", p["seconds"]) if light else step_command(exit_file, p["seconds"])
        steps.append({"info": info, "step_run": step_run, "exit_file": exit_file, "command": command, "name": name})
    first_step = _first_step(kind, op, admin, p, image, light)
    console = _Console().install() if light and kind == "k8s" else None
    looks = None
    if os.environ.get("K8SBENCH_MEMORY"):  # where the memory is at the peak (development; slows the run)
        from .memory import MemoryLooks

        looks = MemoryLooks(os.environ["K8SBENCH_MEMORY"], f"{kind}-{n}")
    gauges.mark(wait=True)  # the apiserver's request durations so far (read by the gauge child)
    rss = RssSampler().start()
    mark = requests.mark()
    cpu0 = time.process_time()

    def submit_one(step: dict) -> None:
        ts = time.perf_counter()
        submit(op, step["info"], step["command"], STEP_ENV)
        step["submit_s"] = time.perf_counter() - ts

    profile = os.environ.get("K8SBENCH_PROFILE")  # a CPU profile of the submission, every thread (development)
    profiler = None
    if profile:
        import yappi

        yappi.set_clock_type("cpu")
        yappi.start()
        profiler = yappi
    busy0, connections0 = component_cpu(), requests.connections
    t0 = time.time()
    if pool <= 1:
        for step in steps:
            submit_one(step)
    else:
        with ThreadPoolExecutor(max_workers=pool) as executor:
            list(executor.map(submit_one, steps))
    t_submitted = time.time()
    gauges.mark()
    pressure = cpu_pressure()
    if profiler is not None:
        profiler.stop()
        with open(f"{profile}-{kind}-{n}.txt", "w") as out:
            stats = profiler.get_func_stats()
            stats.sort("tsub").print_all(out=out, columns={0: ("name", 90), 1: ("ncall", 12), 2: ("tsub", 8), 3: ("ttot", 8), 4: ("tavg", 8)})
            profiler.get_thread_stats().print_all(out=out)
    busy = {k: round(v, 2) for k, v in sorted((component_cpu() - busy0).items())}
    connections_submission = requests.connections - connections0
    submit_cpu_s = time.process_time() - cpu0
    followed: list[float] = []
    pending = [sub.follow_up for sub in op._known.values() if sub.follow_up is not None] if kind == "k8s" else []
    for future in pending:  # ours sends each Job's Secret after submit returned: when were all of them created?
        # stamped by the sender thread as it finishes (no thread of the bench's in the measured process); one
        # already finished is stamped now, which can only make ours look later
        future.add_done_callback(lambda _f: followed.append(time.time()))

    def waiter(step: dict) -> None:
        try:
            step["status"] = status_value(op.wait(step["step_run"]))
        except Exception as exc:  # noqa: BLE001 - reported
            step["status"] = f"error: {exc}"
        step["t_return"] = time.time()
        step["pod"] = pod_name(kind, op, step["step_run"])

    threads = [threading.Thread(target=waiter, args=(s,), daemon=True) for s in steps]
    for t in threads:
        t.start()
    deadline = time.monotonic() + p["timeout"]
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    t_done = time.time()
    cpu_s = time.process_time() - cpu0
    rss_end = rss.stop()
    if looks is not None:
        looks.stop()
    peaks = gauges.stop()
    rows = requests.rows(mark)
    followers = _followers(op, steps) if console is not None else None
    for s in steps:
        op.cleanup_step_submission(s["step_run"])
    logs = console.uninstall().check([s["name"] for s in steps]) if console is not None else None
    if logs is not None:
        logs["followers"] = followers
    left = _left_behind(admin, p["namespace"])

    detections, to_event, to_return = [], [], []
    for s in steps:
        t_exit = read_exit(s["exit_file"])
        if t_exit is None or "t_return" not in s:
            continue
        detections.append(s["t_return"] - t_exit)
        t_event = events.finished_at(s["pod"]) if events is not None and s.get("pod") else None
        if t_event is not None:
            to_event.append(t_event - t_exit)
            to_return.append(s["t_return"] - t_event)
    statuses: dict[str, int] = {}
    for s in steps:
        key = s.get("status", "still waiting")
        statuses[key] = statuses.get(key, 0) + 1
    out: dict[str, Any] = {
        "n": n,
        "submit_threads": pool,
        "step_seconds": p["seconds"],
        "submission_s": t_submitted - t0,
        "submit_each": summary([s["submit_s"] for s in steps if "submit_s" in s]),
        "cluster_cpu_during_submission_s": busy,
        "connections_opened": {"submission": connections_submission, "all": requests.connections - connections0},
        "all_objects_created_s": (
            (max(followed) - t0 if followed and len(followed) == len(pending) else None) if kind == "k8s" else t_submitted - t0
        ),
        "orchestrator_cpu_during_submission_s": submit_cpu_s,
        "all_returned_after_submission_s": t_done - t_submitted,
        "statuses": statuses,
        "detection": summary(detections),
        "detections": detections,
        "rss_start_mib": mib(rss.start_rss),
        "rss_peak_mib": mib(rss.peak_rss),
        "rss_end_mib": mib(rss_end),
        "rss_growth_mib": mib(rss.peak_rss - rss.start_rss),
        "rss_per_step_kib": (rss.peak_rss - rss.start_rss) / 1024 / n,
        "cpu_s": cpu_s,
        "cpu_per_step_ms": cpu_s * 1000 / n,
        "light": light,
        "logs": logs,
        "left_behind": left,
        "peak_threads": rss.peak_threads,
        "first_step": first_step,
        "server_open_watches_pods": peaks["watch_pods"],
        "server_open_log_streams": peaks["log_streams"],
        # what the apiserver finished in the window (from mark to mark), with its own mean time per request
        "server_during_submission": (peaks.get("server_windows") or [None])[0],
        "cpu_pressure_after_submission": pressure,
        "requests": {row_name(r): c for r, c in sorted(rows.items())},
    }
    if events is not None:
        out["exit_to_event"] = summary(to_event)
        out["event_to_return"] = summary(to_return)
        from k8s_step_operator.kube.podwatch import PodWatch

        out["client_pod_watches"] = len(PodWatch._registry)
        out["client_watch_requests"] = sum(w.watch_requests for w in PodWatch._registry.values())
    return out


class _Console:
    """Captures what our operator streams to stdout (each line prefixed ``[step]``) and checks that
    every step's log holds exactly its own two lines: nothing lost, nothing from another step."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._buffer = ""
        self._real = sys.stdout

    def install(self) -> "_Console":
        sys.stdout = self  # type: ignore[assignment]
        return self

    def uninstall(self) -> "_Console":
        sys.stdout = self._real
        return self

    def write(self, text: str) -> int:
        with self._lock:
            self._buffer += text
            *done, self._buffer = self._buffer.split("\n")
            self.lines += done
        return len(text)

    def flush(self) -> None:
        pass

    def check(self, names: list[str]) -> dict:
        import re

        seen: dict[str, list[str]] = {n: [] for n in names}
        foreign = 0
        other: list[str] = []
        for line in self.lines:
            m = re.match(r"^\[(scale\d+)\] token-(scale\d+) (start|done)$", line)
            if not m:
                other.append(line)
                continue
            if m.group(1) != m.group(2) or m.group(1) not in seen:
                foreign += 1
                continue
            seen[m.group(1)].append(m.group(3))
        complete = sum(1 for lines in seen.values() if lines == ["start", "done"])
        return {"steps_with_exactly_their_two_lines": complete, "steps": len(names), "foreign_lines": foreign,
                "steps_missing_lines": sum(1 for lines in seen.values() if len(lines) < 2),
                "steps_with_repeated_lines": sum(1 for lines in seen.values() if len(lines) > 2),
                "other_lines": len(other), "other_sample": other[:5],
                "missing_sample": {n: lines for n, lines in seen.items() if len(lines) < 2}.__repr__()[:400]}


def _followers(op: Any, steps: list[dict]) -> dict:
    """Our log followers as the waits left them (before clean-up): how many, ended, lines read, reconnects."""
    subs = [op._known.get(str(s["step_run"].id)) for s in steps]
    follows = [f for sub in subs if sub is not None for f in sub.logs.values()]
    return {
        "steps_without_follower": sum(1 for sub in subs if sub is None or not sub.logs),
        "followers": len(follows),
        "ended": sum(1 for f in follows if f._done.is_set()),
        "lines": sum(f.lines for f in follows),
        "reconnects": sum(f.reconnects for f in follows),
    }


def _first_step(kind: str, op: Any, admin: Admin, p: dict, image: str | None, light: bool) -> dict:
    """One step through submit → ``wait()`` → clean-up before the window, for both operators, as a
    pipeline's first step: what happens once per process (modules loaded on first use, the first
    connections; ours' shared watch and sender thread, the built-in's API model classes) is not counted
    per in-flight step. Its own cost is returned. The built-in's Job and pod are deleted afterwards
    (it leaves them), and the window starts once the namespace is empty."""
    import psutil

    proc = psutil.Process()
    info, step_run = make_step("first", run_name=f"scale-first-{kind}", **({"image": image} if image else {}))
    exit_file = str(Path(p["exit_dir"]) / f"scale-first-{kind}-{uuid.uuid4().hex[:6]}")
    command = light_command("token-first", 1) if light else step_command(exit_file, 1)
    rss0, cpu0 = proc.memory_info().rss, time.process_time()
    submit(op, info, command, STEP_ENV)
    status = status_value(op.wait(step_run))
    op.cleanup_step_submission(step_run)
    out = {"status": status, "rss_growth_kib": (proc.memory_info().rss - rss0) / 1024,
           "cpu_ms": (time.process_time() - cpu0) * 1000}
    jobs = f"/apis/batch/v1/namespaces/{p['namespace']}/jobs"
    for job in admin.get(jobs).get("items", []):
        admin.delete(f"{jobs}/{job['metadata']['name']}")
    out["left"] = _left_behind(admin, p["namespace"], timeout=60.0)
    return out


def _left_behind(admin: Admin, namespace: str, timeout: float = 120.0, still: float = 15.0) -> dict:
    """What is still in the bench's own namespace after clean-up: garbage collection is given time until
    nothing is left, or nothing has changed for ``still`` seconds with nothing being deleted (what the
    built-in leaves never goes), or ``timeout``."""
    paths = {"pods": f"/api/v1/namespaces/{namespace}/pods", "jobs": f"/apis/batch/v1/namespaces/{namespace}/jobs",
             "secrets": f"/api/v1/namespaces/{namespace}/secrets"}
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while True:
        items = {kind: admin.get(path).get("items", []) for kind, path in paths.items()}
        left = {kind: len(found) for kind, found in items.items()}
        going = any((o.get("metadata") or {}).get("deletionTimestamp") for found in items.values() for o in found)
        if left != last or going:
            last, since = left, time.monotonic()
        if not any(left.values()) or time.monotonic() > deadline or time.monotonic() - since >= still:
            return left
        time.sleep(1.0)


# ------------------------------------------------------------------ failure: unpullable image
def failure(p: dict) -> dict:
    """An image no node can pull: how long until ``wait()`` returns, if ever."""
    kind = p["operator"]
    op = make_operator(kind, p["namespace"], p["kubeconfig"], p.get("config"), p.get("exit_dir"))
    warm_up(kind, op)
    info, step_run = make_step("unpullable", run_name=f"failure-{kind}")
    info.get_image = lambda key: p["image"]  # type: ignore[method-assign]
    result: dict[str, Any] = {}
    t0 = time.time()
    submit(op, info, step_command("/dev/null", 0), STEP_ENV)

    def waiter() -> None:
        result["status"] = status_value(op.wait(step_run))
        result["t_return"] = time.time()

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    thread.join(p["timeout"])
    if "t_return" in result:
        out = {"returned": True, "status": result["status"], "seconds": result["t_return"] - t0}
    else:
        out = {"returned": False, "waited_s": time.time() - t0, "get_status": status_value(op.get_status(step_run))}
    try:
        op.cancel(step_run)
    except Exception as exc:  # noqa: BLE001
        out["cancel_error"] = str(exc)
    return out


SECTIONS: dict[str, Callable[[dict], dict]] = {
    "completion": completion,
    "requests": requests_per_step,
    "scale": scale,
    "failure": failure,
}


def main(argv: list[str]) -> int:
    section, params_path, out_path = argv
    params = json.loads(Path(params_path).read_text())
    try:
        if section == "resource":
            from .resource import run as resource_run

            result = resource_run(params)
        else:
            result = SECTIONS[section](params)
        result = {"ok": True, **result}
    except BaseException as exc:  # noqa: BLE001 - reported to the runner
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    Path(out_path).write_text(json.dumps(result, indent=2, default=str))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # do not wait for daemon threads (watches, log streams, stuck waits)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

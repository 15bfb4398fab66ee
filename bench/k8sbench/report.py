"""Render ``bench/RESULTS.md`` from the run's data (``bench/results.json``)."""

from __future__ import annotations

import math
import statistics
from typing import Any, Callable, Optional

OURS = "k8s"
THEIRS = "builtin"


# ----------------------------------------------------------------------------- formatting
def dur(x: Optional[float]) -> str:
    if x is None:
        return "—"
    if abs(x) < 1.0:
        return f"{x * 1000:.0f} ms"
    return f"{x:.2f} s"


def num(x: Optional[float], digits: int = 1) -> str:
    if x is None:
        return "—"
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.{digits}f}"


def ratio(ours: Optional[float], theirs: Optional[float]) -> str:
    if ours is None or theirs is None or ours <= 0:
        return "—"
    r = theirs / ours
    return f"{r:.0f}×" if r >= 10 else f"{r:.1f}×"


def verdict(ok: Optional[bool]) -> str:
    return "—" if ok is None else ("**yes**" if ok else "**no**")


def ok(section: Any) -> bool:
    return isinstance(section, dict) and section.get("ok", True) is not False


def get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def failed_note(name: str, section: Any) -> str:
    if section is None:
        return f"_Section `{name}` was not run._"
    if isinstance(section, dict) and section.get("ok") is False:
        return f"_Section `{name}` failed: {section.get('error')}_"
    return ""


# -------------------------------------------------------------------------------- summary
def summary_rows(data: dict) -> list[list[str]]:
    s = data.get("sections", {})
    rows = []

    comp = s.get("completion") or {}
    o, t = get(comp, OURS, "detection"), get(comp, THEIRS, "detection")
    if o or t:
        rows.append(
            [
                "1",
                f"Completion detection: step exit → `wait()` returns, p50 / p95 (n={get(o, 'n') or get(t, 'n')})",
                "p50 ≤ 50 ms",
                f"{dur(get(o, 'p50'))} / {dur(get(o, 'p95'))}",
                f"{dur(get(t, 'p50'))} / {dur(get(t, 'p95'))}",
                f"{ratio(get(o, 'p50'), get(t, 'p50'))} / {ratio(get(o, 'p95'), get(t, 'p95'))}",
                verdict(None if get(o, "p50") is None else get(o, "p50") <= 0.05),
            ]
        )

    share, bare = get(comp, OURS, "event_to_return", "p50"), get(comp, "k8s-nologs", "event_to_return", "p50")
    if share is not None:
        rows.append(
            [
                "1b",
                "…of which the operator's share: the watch event with the exited container → `wait()` returns, "
                "p50 (with logs; in brackets with `stream_logs=False`)",
                "≤ 5 ms",
                f"{dur(share)} ({dur(bare)})",
                "— (polls)",
                "—",
                verdict(share <= 0.005),
            ]
        )

    e2e = get(s, "e2e", "analysis") or {}
    if e2e:
        oo, to = get(e2e, OURS, "overhead_s"), get(e2e, THEIRS, "overhead_s")
        po, pt = get(e2e, OURS, "paired_over_baseline_s"), get(e2e, THEIRS, "paired_over_baseline_s")
        _, se = e2e_spread(e2e)
        pm = f" ± {dur(se)}" if se is not None else ""
        rows.append(
            [
                "2",
                f"End-to-end overhead per {num(get(s, 'e2e', 'step_seconds'))} s step in a ZenML pipeline: median "
                f"orchestrator view − median plain subprocess ({dur(e2e.get('plain_subprocess_s'))}), ± 1 standard "
                "error from ZenML's own start-up variance; in brackets the paired per-step estimate (see §2)",
                "≤ 0.5 s",
                f"{dur(oo)}{pm} ({dur(po)})",
                f"{dur(to)}{pm} ({dur(pt)})",
                f"{ratio(oo, to)} ({ratio(po, pt)})",
                e2e_verdict(oo, po),
            ]
        )

    req = s.get("requests") or {}
    o, t = get(req, OURS), get(req, THEIRS)
    if ok(o) and o or ok(t) and t:
        secs = get(o, "step_seconds") or get(t, "step_seconds")
        ours_n = get(o, "operator_requests", "p50")
        rows.append(
            [
                "3",
                f"API requests per {num(secs)} s step sent by the operator (median; checked against "
                "`apiserver_request_total`)",
                "≤ 4 + shared watch",
                f"{num(ours_n)} + shared watch" if ours_n is not None else "—",
                f"{num(get(t, 'operator_requests', 'p50'))} (no watch: polls)",
                ratio(ours_n, get(t, "operator_requests", "p50")),
                verdict(None if ours_n is None else ours_n <= 4),
            ]
        )
        ro, rt = get(o, "all_clients_step_related", "p50"), get(t, "all_clients_step_related", "p50")
        rows.append(
            [
                "3b",
                "…and all requests the step causes, every client (node, scheduler, controllers), per apiserver "
                "metrics; in brackets the DELETEs among them (clean-up within the window)",
                "—",
                f"{num(ro)} ({num(_deletions(o))})",
                f"{num(rt)} ({num(_deletions(t))})",
                ratio(ro, rt),
                "—",
            ]
        )

    runs = [r for r in (get(s, "scale", "runs") or []) if ok(r)]
    for n in sorted({r["n"] for r in runs if r["n"] >= 100}):
        threads = max(r["submit_threads"] for r in runs if r["n"] == n)
        o, t = case_medians(runs, n, threads)
        sub_o, sub_t = get(o, "submission_s"), get(t, "submission_s")
        rows.append(
            [
                f"4 ({n})",
                f"{n} concurrent steps (submitted from {threads} threads, like a ZenML dynamic pipeline): all "
                "`submit()` calls returned",
                "ahead of the built-in, on 1 pod watch",
                f"{dur(sub_o)} (its {num(get(o, 'requests', 'POST secrets'))} Secrets all created after "
                f"{dur(get(o, 'all_objects_created_s'))}; pod watches: {num(get(o, 'server_open_watches_pods'))})",
                f"{dur(sub_t)} (no watch; {num(get(t, 'requests', 'LIST batch/jobs'))} LIST polls)",
                ratio(sub_o, sub_t),
                verdict(None if sub_o is None or sub_t is None else
                        sub_o < sub_t and (get(o, "server_open_watches_pods") or 0) <= 1),
            ]
        )
        cpu_o, cpu_t = get(o, "cpu_per_step_ms"), get(t, "cpu_per_step_ms")
        mem_o, mem_t = get(o, "rss_per_step_kib"), get(t, "rss_per_step_kib")
        rows.append(
            [
                "",
                f"…orchestrator CPU time / memory (RSS growth) per in-flight step, {n} steps (ours streams every "
                "log; the built-in streams none)",
                "—",
                f"{num(cpu_o)} ms / {num(mem_o)} KiB",
                f"{num(cpu_t)} ms / {num(mem_t)} KiB",
                f"{ratio(cpu_o, cpu_t)} / {ratio(mem_o, mem_t)}",
                "—",
            ]
        )
        left_o, left_t = get(o, "left_behind") or {}, get(t, "left_behind") or {}
        rows.append(
            [
                "",
                f"…statuses right / objects left after clean-up, {n} steps",
                "all completed / none",
                f"{_statuses(o)} / {_left(left_o)}",
                f"{_statuses(t)} / {_left(left_t)}",
                "—",
                verdict(None if o is None else
                        (get(o, "statuses") or {}).get("completed") == n and not any(left_o.values())),
            ]
        )

    res = s.get("resource") or {}
    w, pl = get(res, "reaction", "watch"), get(res, "reaction", "poll-5s")
    if w:
        rows.append(
            [
                "5",
                f"Resource step: status change → step returns, p50 / p95 (n={get(w, 'n')})",
                "≤ 100 ms",
                f"{dur(get(w, 'p50'))} / {dur(get(w, 'p95'))}",
                f"no resource steps. Argo-style 5 s poll: {dur(get(pl, 'p50'))} / {dur(get(pl, 'p95'))}",
                f"{ratio(get(w, 'p50'), get(pl, 'p50'))} / {ratio(get(w, 'p95'), get(pl, 'p95'))} (vs. poll)",
                verdict(None if get(w, "p95") is None else get(w, "p95") <= 0.1),
            ]
        )

    fail = s.get("failure") or {}
    o, t = fail.get(OURS), fail.get(THEIRS)
    if o or t:
        rows.append(
            [
                "+",
                "Unpullable image (ImagePullBackOff): `wait()` returns",
                "—",
                describe_failure(o),
                describe_failure(t),
                "—",
                "—",
            ]
        )
    return rows


def e2e_spread(analysis: dict) -> tuple[Optional[float], Optional[float]]:
    """(σ of ZenML's in-process time per step over all variants, 1 s.e. of a difference of two medians).

    Process time per step = orchestrator view − (orchestrator view − process time); the standard
    error of a median of n is about 1.2533 σ / √n, and a difference of two adds them in quadrature.
    """
    per_kind = []
    for kind in ("subprocess", OURS, THEIRS):
        r = analysis.get(kind) or {}
        views, around = r.get("orchestrator_all") or [], r.get("paired_overhead_all") or []
        times = [v - a for v, a in zip(views, around, strict=False)]
        if len(times) >= 2:
            per_kind.append(times)
    if not per_kind:
        return None, None
    sigma = statistics.pstdev([t - statistics.mean(ts) for ts in per_kind for t in ts])
    n = min(len(ts) for ts in per_kind)
    return sigma, 1.2533 * sigma / math.sqrt(n) * math.sqrt(2)


def e2e_verdict(medians: Optional[float], paired: Optional[float]) -> str:
    """Judged by both figures; say which one when they disagree."""
    if medians is None:
        return "—"
    a = medians <= 0.5
    if paired is None or (paired <= 0.5) == a:
        return verdict(a)
    return f"{verdict(a)} by medians, {verdict(paired <= 0.5)} paired"


def describe_failure(r: Any) -> str:
    if not ok(r) or not r:
        return "—"
    if r.get("returned"):
        return f"{r.get('status')} after {dur(r.get('seconds'))}"
    return f"never: still waiting after {dur(r.get('waited_s'))} (`get_status` says {r.get('get_status')})"


# ------------------------------------------------------------------------------- sections
def section_completion(data: dict) -> str:
    s = get(data, "sections", "completion")
    note = failed_note("completion", s)
    if note:
        return note
    rows = []
    for label in (OURS, "k8s-nologs", THEIRS):
        r = s.get(label)
        if not r:
            continue
        if not ok(r):
            rows.append([label, f"failed: {r.get('error')}", "", "", "", "", ""])
            continue
        d = r["detection"]
        extra = ""
        if "exit_to_event" in r:
            extra = f"exit→watch event {dur(get(r, 'exit_to_event', 'p50'))}, event→return {dur(get(r, 'event_to_return', 'p50'))}"
        else:
            extra = f"{num(get(r, 'polls_per_step', 'p50'))} LIST polls per step (median)"
        rows.append([label, str(d.get("n")), dur(d.get("p50")), dur(d.get("p95")), dur(d.get("max")), dur(d.get("mean")), extra])
    durations = s.get("durations") or []
    return "\n".join(
        [
            table(["operator", "steps", "p50", "p95", "max", "mean", "breakdown (p50)"], rows),
            "",
            f"Steps run one at a time; each sleeps a seeded random {min(durations, default=0):g}–{max(durations, default=0):g} s "
            "(the same sequence for every operator, so the built-in's poll schedule of 1, 2, 4, 8, 16 s meets "
            "exits at varied phases). Just before `os._exit(0)` the step process writes `time.time()` to a file "
            "(pods are processes on this machine, so that clock is the bench's clock). Detection = the moment "
            "`wait()` returns − that time. For ours, the time our shared watch received the event with the "
            "terminated container is also noted (by wrapping `PodWatch._apply` in the bench process; no code "
            "change), which splits detection into node+apiserver (exit→event) and operator (event→return). "
            "With logs, event→return includes reading the log's rest: the pod's report of the exit cuts the "
            "follow (the kubelet would end it only at its next look at the quiet file, up to 1 s later) and the "
            "lines after the last one printed are read once. `k8s-nologs` is ours with `stream_logs=False`.",
        ]
    )


E2E_PARTS = (
    ("before_submit", "launcher → submit"),
    ("launch", "submit → process start"),
    ("in_process", "process start → atexit (ZenML + the step)"),
    ("atexit_to_wait_return", "atexit → `wait()` returns"),
    ("after_wait", "after `wait()` (finalize, clean-up)"),
)


def section_e2e(data: dict) -> str:
    s = get(data, "sections", "e2e")
    note = failed_note("e2e", s)
    if note:
        return note
    a = s["analysis"]
    rows = []
    for kind in ("subprocess", OURS, THEIRS):
        r = a.get(kind)
        if not r:
            continue
        p = r.get("parts_median_s") or {}
        rows.append(
            [
                {"subprocess": "plain subprocess (baseline)", OURS: "k8s (ours)", THEIRS: "kubernetes (built-in)"}[kind],
                str(r.get("steps")),
                dur(r.get("orchestrator_s")),
                dur(r.get("overhead_s")) if kind != "subprocess" else "(baseline)",
                dur(r.get("paired_over_baseline_s")) if kind != "subprocess" else f"({dur(r.get('paired_overhead_s'))})",
                *[dur(p.get(k)) for k, _ in E2E_PARTS],
            ]
        )
    runs = s.get("runs") or {}
    failures = [
        f"{kind} run {i}: {res.get('status')}" for kind, rs in runs.items() for i, res in enumerate(rs) if res.get("status") != "completed"
    ]
    command = next((res.get("command") for rs in runs.values() for res in rs if res.get("command")), None)
    all_rows = [
        [kind, ", ".join(f"{x:.2f}" for x in (a.get(kind) or {}).get("orchestrator_all") or []),
         ", ".join(f"{x:.2f}" for x in (a.get(kind) or {}).get("paired_overhead_all") or [])]
        for kind in ("subprocess", OURS, THEIRS) if a.get(kind)
    ]
    lines = [
        table(
            ["variant", "steps", "orchestrator view (median)", "overhead: median − plain subprocess",
             "overhead, paired (see below)", *[label for _, label in E2E_PARTS]],
            rows,
        ),
        "",
        f"Plain local subprocess of the entrypoint command (Popen → exit, median of "
        f"{len(a.get('plain_subprocess_all') or [])}): **{dur(a.get('plain_subprocess_s'))}** "
        f"(all: {', '.join(f'{x:.2f}' for x in a.get('plain_subprocess_all') or [])} s). "
        f"In the baseline, the step's atexit hook fires {dur(a.get('atexit_to_exit_s'))} (median) before the "
        "process really exits (ZenML's own exit handlers run after it), so in the pods, too, most of "
        "*atexit → `wait()` returns* is the process finishing, not the operator.",
        "",
        table(["variant", "orchestrator view per step, s", "orchestrator view − process time per step, s"], all_rows),
    ]
    sigma, se = e2e_spread(a)
    if sigma is not None:
        lines += [
            "",
            f"Spread: ZenML's own time inside the step process (process start → exit) varies with σ = "
            f"{dur(sigma)} from step to step here (around each variant's mean, all variants), so a difference of "
            f"two medians of {min(r.get('steps') or 0 for r in (a.get(k) or {} for k in ('subprocess', OURS)))} "
            f"steps carries about ± {dur(se)} (1 standard error) of ZenML start-up noise alone — more than the "
            "operator's share. The paired figure subtracts each step's own process time and so removes it; it "
            "is the one to read.",
        ]
    trace = get(a, OURS, "trace_median_s")
    if trace:
        lines += [
            "",
            "Ours, traced (medians): atexit → our shared watch sees the container terminated "
            f"{dur(trace.get('atexit_to_terminated_seen'))}; that event → `wait()` returns "
            f"{dur(trace.get('terminated_seen_to_wait_return'))}, of which waiting for the log stream to end "
            f"(`LogFollower.join`, at most 5 s) {dur(trace.get('log_join'))}.",
        ]
    if failures:
        lines += ["", "Runs that did not complete: " + "; ".join(failures)]
    if command:
        lines += ["", "The entrypoint command ZenML built (first step of one run):", "", "    " + " ".join(command)]
    lines += [
        "",
        "Each variant runs the pipeline `bench_overhead` — a chain of identical steps that `time.sleep(2)` "
        "(`DockerSettings(skip_build=True, parent_image=registry.k8sso.local/k8sso/step:latest)`) — on the local orchestrator, "
        "from a ZenML repository in a tmp dir; rounds alternate the variant order.",
        "",
        "* **Orchestrator view**: ZenML's `StepLauncher._run_step_with_step_operator` (builds the entrypoint "
        "command and environment, `submit_with_allocation`, `wait`, finalizes, `cleanup_step_submission`) is "
        "wrapped with a timer in the pipeline process.",
        "* **Plain subprocess**: a bench step operator (`k8sbench.subprocess_operator`) whose `submit` is "
        "`subprocess.Popen(entrypoint_command, env=os.environ | environment)` and whose `wait` is `proc.wait()`. "
        "It gets the command and environment ZenML builds for the step and asks for the same skipped build, so "
        "ZenML ships the code archive and the entrypoint downloads it exactly as in a pod. Its Popen → exit "
        "time is the plain-subprocess figure. **Overhead: median − plain subprocess** is the issue's "
        "definition: median orchestrator view − median plain-subprocess time.",
        "* **Overhead, paired**: ZenML's start-up inside the entrypoint varies by several hundred ms from "
        "step to step here, which swamps a sub-second difference between medians of a few steps. So the step "
        "also notes its process's start (`/proc/self/stat`, 10 ms resolution) and, from an `atexit` hook, the "
        "moment ZenML has finished the step run. Per step, orchestrator view − that process time = everything "
        "around the process; its median minus the baseline's median (in brackets: ZenML's launcher "
        "bookkeeping, a local spawn and ZenML's exit handlers) is what the operator adds.",
        "* The remaining columns split the median step along the same time stamps.",
    ]
    return "\n".join(lines)


def section_requests(data: dict) -> str:
    s = get(data, "sections", "requests")
    note = failed_note("requests", s)
    if note:
        return note
    blocks = []
    for label in (OURS, "k8s-nologs", THEIRS):
        r = s.get(label)
        if not r:
            continue
        if not ok(r):
            blocks.append(f"**{label}**: failed: {r.get('error')}")
            continue
        first = (r.get("steps") or [{}])[0]
        rows = [[name, num(v["operator_log"]), num(v["apiserver"])] for name, v in sorted((first.get("operator_rows") or {}).items())]
        shared = get(r, "shared_watch", "requests") or {}
        confirms = all(st.get("apiserver_confirms") for st in r.get("steps", []))
        blocks.append(
            "\n".join(
                [
                    f"**{label}** — {num(get(r, 'operator_requests', 'p50'))} requests per step by the operator "
                    f"(median of {get(r, 'operator_requests', 'n')} steps of {num(r.get('step_seconds'))} s); "
                    f"apiserver counts in those rows ≥ the operator's log in every row: {'yes' if confirms else 'NO'}; "
                    f"all clients, step-related: {num(get(r, 'all_clients_step_related', 'p50'))}.",
                    "",
                    table(["request (first step)", "operator's log", "apiserver_request_total Δ (net of idle)"], rows),
                    "",
                    f"Shared watch over the worker's life ({dur(get(r, 'shared_watch', 'lifetime_s'))}): "
                    + (", ".join(f"{k} ×{v}" for k, v in shared.items()) or "none (the operator does not watch)")
                    + ".",
                    "",
                    "All step-related requests per client row (first step, net of idle background): "
                    + ", ".join(f"{k} {num(v)}" for k, v in (first.get("all_clients_rows") or {}).items()),
                ]
            )
        )
    return "\n\n".join(blocks) + "\n\n" + (
        "Method: a fresh process per operator builds the component and, for ours, opens the shared pod watch "
        "before anything is counted. The apiserver's `/metrics` is read before and after each step "
        "(submit → `wait()` → `cleanup_step_submission` → a few seconds for the garbage collector and the Job "
        "controller); the difference of `apiserver_request_total`, summed per (verb, group, resource, "
        "subresource), is what the apiserver served in that window. An idle window of the same cluster gives "
        "the background rate (node leases), subtracted per row. `apiserver_request_total` carries no client "
        "label, so the operator's share is identified with a request log of the operator's own Kubernetes "
        "client (the bench wraps `kubernetes.client.rest.RESTClientObject.request`); the table shows both "
        "numbers per row. Where the apiserver counts more than the operator sent, another component acted on "
        "the same kind of object (e.g. the kubelet's final `DELETE` of a pod it finished, the garbage "
        "collector deleting the pod and the Secret of the deleted Job). Log streams are counted as `CONNECT pods/log` by the "
        "apiserver. Watches are counted when they end (our shared watch — one reflector for the managed pods and, "
        "once a step is slow to start or fails, one for the namespace's Warning events, both shared by every "
        "step — re-connects about once a minute: "
        "`timeoutSeconds=60`), so they are reported separately. \"Step-related\" leaves out what happens on "
        "a timer with or without steps — node heartbeats (leases, nodes), watch re-connections, the apiserver's "
        "reconciliation of its own endpoints, relists of Services — and rows whose net count is below half a "
        "request (a negative net is the idle rate over-estimating a timer's request in that window)."
    )


MEDIAN_KEYS = ("submission_s", "all_objects_created_s", "rss_per_step_kib", "cpu_per_step_ms")
RANGE_KEYS = ("submission_s", "rss_per_step_kib")  # shown as least – most run beside their median


def median_run(runs: list[dict]) -> dict | None:
    """One case run several times, as one row: the run with the median submission time, with each of
    ``MEDIAN_KEYS`` the median over all runs; statuses and leftovers are the worst run's."""
    if not runs:
        return None
    ordered = sorted(runs, key=lambda r: r.get("submission_s") or 0.0)
    out = dict(ordered[(len(ordered) - 1) // 2])
    for key in MEDIAN_KEYS:
        values = [v for v in (r.get(key) for r in runs) if v is not None]
        if values:
            out[key] = statistics.median(values)
    worst = min(runs, key=lambda r: ((r.get("statuses") or {}).get("completed", 0), -sum((r.get("left_behind") or {}).values())))
    out["statuses"], out["left_behind"] = worst.get("statuses"), worst.get("left_behind")
    out["runs"] = len(runs)
    for key in RANGE_KEYS:
        values = [r[key] for r in runs if r.get(key) is not None]
        out[f"{key}_range"] = (min(values), max(values)) if values else None
    return out


def case_medians(runs: list[dict], n: int, threads: int) -> tuple[dict | None, dict | None]:
    """Ours and the built-in's :func:`median_run` of the scale case (``n`` steps, ``threads``)."""
    case = [r for r in runs if r["n"] == n and r["submit_threads"] == threads]
    return (median_run([r for r in case if r["operator"] == OURS]),
            median_run([r for r in case if r["operator"] == THEIRS]))


def _spread(median: dict | None, key: str, show: Callable[[Any], str]) -> str:
    """The least and the most of ``key`` among the runs of a :func:`median_run`."""
    spread = get(median, f"{key}_range")
    return f"{show(spread[0])} – {show(spread[1])}" if spread else "—"


def _node_side(node_side: dict | None) -> str:
    if not node_side:
        return "as started (0)"
    return f"{node_side['nice']} ({node_side['processes']} processes, {node_side['threads']} threads at the start; new ones inherit it)"


def _memcgs(counts: dict | None) -> str:
    """``{"before": N, "after": M}`` from :func:`run.drop_caches` as "N → M"."""
    if not counts or counts.get("before") is None:
        return "not read"
    after = counts.get("after")
    return f"{counts['before']} → {after if after is not None else 'not dropped (not root)'}"


def _server_side(run: dict) -> str:
    """The apiserver's mean duration of the Job POSTs it finished in the window (its own clock: what the
    request cost on the server, as against ``per submit p50`` in the client), and the machine's CPU pressure
    ("some avg10") when the window ended."""
    jobs = (run.get("server_during_submission") or {}).get("POST batch/jobs")
    if not jobs:
        return "—"
    text = f"{dur(jobs['mean_ms'] / 1000)} ({jobs['n']})"
    if run.get("cpu_pressure_after_submission") is not None:
        text += f"; {num(run['cpu_pressure_after_submission'])} %"
    return text


def _settled(settled: dict | None) -> str:
    """The machine's CPU use (cores) when a run started, how long the wait for it took, and the kernel's
    memory cgroups before → after the caches were dropped."""
    if not settled:
        return "—"
    text = f"{num(settled.get('busy_cores'))} ({dur(settled.get('waited_s'))})"
    if settled.get("memory_cgroups"):
        text += f"; {_memcgs(settled['memory_cgroups'])}"
    return text


def section_scale(data: dict) -> str:
    s = get(data, "sections", "scale")
    note = failed_note("scale", s)
    if note:
        return note
    dropped = any(get(r, "settled", "memory_cgroups", "after") is not None for r in s.get("runs") or [])
    server_side = any(r.get("server_during_submission") for r in s.get("runs") or [])
    rows = []
    for r in sorted(s.get("runs") or [],
                    key=lambda r: (r.get("submit_threads") == 1, r.get("n"), r.get("operator"), r.get("repeat", 0))):
        head = [r.get("operator", "?"), str(r.get("n")), str(r.get("submit_threads")), str(r.get("repeat", 0) + 1)]
        if not ok(r):
            rows.append(head + [f"failed: {r.get('error')}"] + [""] * 16)
            continue
        statuses = ", ".join(f"{k} {v}" for k, v in (r.get("statuses") or {}).items())
        rows.append(
            head
            + [
                dur(r.get("submission_s")),
                dur(r.get("all_objects_created_s")),
                dur(get(r, "submit_each", "p50")),
                _server_side(r),
                _window_cpu(r),
                num(r.get("server_open_watches_pods")),
                num(r.get("server_open_log_streams")),
                f"{num(r.get('rss_start_mib'))} → {num(r.get('rss_peak_mib'))} (+{num(r.get('rss_growth_mib'))})",
                num(r.get("rss_per_step_kib")),
                num(r.get("cpu_per_step_ms")),
                num(r.get("peak_threads")),
                _first_step_cost(r.get("first_step")),
                dur(r.get("all_returned_after_submission_s")),
                _settled(r.get("settled")),
                statuses,
                _log_check(r.get("logs")),
                ", ".join(f"{k} {v}" for k, v in (r.get("left_behind") or {}).items()) or "—",
            ]
        )
    good = [r for r in s.get("runs") or [] if ok(r)]
    cases = sorted({(r["n"], r["submit_threads"]) for r in good}, key=lambda c: (c[1] == 1, c[0]))
    medians = []
    for n, threads in cases:
        o, t = case_medians(good, n, threads)
        cells = [f"{n} / {threads}", str(get(o, "runs") or 0)]
        for key, show in (("submission_s", dur), ("rss_per_step_kib", num), ("cpu_per_step_ms", num)):
            cells += [show(get(o, key)), show(get(t, key)), ratio(get(o, key), get(t, key))]
            if key in RANGE_KEYS:
                cells.append(f"{_spread(o, key, show)} / {_spread(t, key, show)}")
        medians.append(cells)
    return "\n".join(
        [
            "Medians per case (*runs*: how many times the case ran; a median of two is their "
            "mean; the operator that goes first alternating from run to run; every run is in the table after "
            "this one):",
            "",
            table(
                ["steps / submit threads", "runs", "submission: ours", "built-in", "built-in ÷ ours",
                 "submission, fastest – slowest run: ours / built-in", "RSS KiB per step: ours", "built-in", "built-in ÷ ours",
                 "RSS KiB per step, least – most: ours / built-in",
                 "orchestrator CPU ms per step: ours", "built-in", "built-in ÷ ours"],
                medians,
            ),
            "",
            table(
                ["operator", "steps", "submit threads", "run", "submission (all)", "all objects created", "per submit p50",
                 "apiserver's own mean time per POST jobs (requests it finished in the window); CPU pressure after",
                 "CPU s during submission: orchestrator / apiserver / nodes", "pod watches (apiserver)",
                 "log streams (apiserver, peak)", "RSS MiB start → peak (+growth)", "RSS KiB per step",
                 "orchestrator CPU ms per step", "peak threads",
                 "first step, before the window: RSS KiB / CPU ms", "last return after submission",
                 "machine before the run: cores busy (settled after); memory cgroups before → after dropping caches", "statuses",
                 "streamed logs", "left in the namespace after clean-up"],
                rows,
            ),
            "",
            "Direct submit/wait in a fresh process per row, with the calls ZenML's launcher makes. Each row "
            "starts on a cluster without the previous row's objects (its namespace is deleted and gone first: the "
            "built-in keeps every pod and Job, and hundreds of exited containers would weigh on the next row's "
            "kubelets), "
            + ("on the same kernel state (the page cache and reclaimable slab are dropped, "
               "`/proc/sys/vm/drop_caches`: a removed pod's memory cgroup stays allocated while pages it charged are "
               "cached, and a session's pods leave tens of thousands, on a kernel that lives across sessions; the "
               "count before → after is in the runs' table), " if dropped else "")
            + "and waits until the machine's CPU use is back within 0.15 cores of the idle cluster's "
            "(measured once the cluster is up, in the machine table) over two 2 s readings in a row, at most three "
            "minutes (the last reading and the wait are in the runs' table): containerd tearing the last "
            "row's sandboxes down must not run in the next row's window. For the same reason the largest case runs "
            "last. The operators' order alternates from one run to the next. Before the "
            "window each operator gets `get_docker_builds(snapshot)`, as ZenML calls it on every stack component "
            "before a run, with the fanned-out step as the snapshot's config template (a dynamic pipeline's "
            "snapshot holds the steps it fans out from, and each invocation runs with its template's "
            "configuration): ours runs its preflight there (dry runs of the step's pod, Job and Secret; access "
            "reviews), so the fan-out's submits make no dry run — were the image built after the preflight, the "
            "first submit of each template would add one dry run; the built-in only lists its builds. Then each runs one step through submit → `wait()` → clean-up, "
            "as a pipeline's first step, so that what happens once per process is not counted per in-flight "
            "step: modules loaded on first use and the first connections for both, ours' shared watch and "
            "sender thread, the built-in's API model classes; its RSS growth and CPU time are in the runs' table "
            "(*first step*), and the built-in's Job and pod from it are deleted before the window, which "
            "starts on an empty namespace. N steps of "
            f"{num(get(data, 'plan', 'scale', 'step_seconds'))} s are submitted from a pool of *submit threads* "
            "(10 = ZenML's dynamic-pipeline default, `ZENML_DYNAMIC_PIPELINE_WORKER_COUNT`; 1 = one loop), "
            "*submission* = first submit call → last one returned; *all objects created*: until the last of "
            "them exists (ours sends the Secrets from a sender thread after `submit` returned, one for the steps "
            "of a run whose Jobs were created while the previous one was out; the built-in creates only its Job). "
            + ("*The apiserver's own mean time per POST jobs*: from its "
               "`apiserver_request_duration_seconds` read just before and just after the window (by the gauge child, "
               "not the worker), so that a run's per-submit time splits into the server's part and the client's; *CPU "
               "pressure*: `/proc/pressure/cpu` \"some avg10\" at the window's end, the share of the last 10 s in "
               "which a runnable task waited for a CPU. " if server_side else "")
            + "*CPU during submission*: CPU seconds used in that window by the "
            "worker process, by kube-apiserver, and by the nodes (kubelets, containerd and its shims, runc), "
            "read from `/proc`. Then `wait()` runs for every step in its own "
            "thread (a dynamic pipeline would instead poll `get_status` every 10 s, which for ours reads the watch "
            "cache without a request); `cleanup_step_submission` after all returned. *Pod watches* and *log "
            "streams*: the peak rise of the apiserver's `apiserver_longrunning_requests` gauge (WATCH pods, "
            "CONNECT pods/log) over its value before the operator existed, sampled every 0.5 s by a child process "
            "(parsing `/metrics` in the worker would count in its memory and CPU). *RSS*: the worker "
            "process (ZenML and the operator imported), sampled every 50 ms from before the first submit to the "
            "last `wait()` return; *per step* = growth ÷ N. *CPU*: the worker process's CPU time (user + system) from "
            "the first submit to the last return, ÷ N. The steps are light on purpose — busybox `sh -c 'echo TOKEN "
            "start; sleep S; echo TOKEN done'`, no ZenML entrypoint — so that hundreds of real containers fit two "
            "cores; both operators get the same explicit requests "
            f"({', '.join(f'{k} {v}' for k, v in (get(data, 'plan', 'scale', 'requests') or {}).items())}; "
            "the built-in's default 400Mi would otherwise decide how many pods fit). *Streamed logs* (ours; the "
            "built-in streams none): every line our operator printed is checked to carry its own step's token, and "
            "each step must show exactly its two lines. *Statuses*: what each step's `wait()` returned (the summary "
            "shows the worst run's); the built-in's `get_status` says failed when its LIST of the step's Jobs fails "
            "(`api_request_timeout`, `max_api_retries`) or finds none, whatever the pod does (ZenML 0.98), and its "
            "`wait()` returns the first finished status it reads; a run does not record which it was. *Left*: pods, "
            "Jobs and Secrets still in the run's own namespace after `cleanup_step_submission` and garbage "
            "collection (until nothing is left, or nothing has changed for 15 s with nothing being deleted; at most "
            "2 min).",
        ]
    )


def _statuses(run: Any) -> str:
    return ", ".join(f"{v} {k}" for k, v in (get(run, "statuses") or {}).items()) or "—"


def _left(left: dict) -> str:
    return ", ".join(f"{v} {k}" for k, v in left.items() if v) or "nothing"


def _window_cpu(r: dict) -> str:
    """Orchestrator / apiserver / nodes CPU seconds during the submission window."""
    busy = r.get("cluster_cpu_during_submission_s")
    if busy is None:
        return "—"
    nodes = sum(busy.get(k, 0.0) for k in ("kubelet", "containerd", "runc"))
    return f"{num(r.get('orchestrator_cpu_during_submission_s'))} / {num(busy.get('kube-apiserver', 0.0))} / {num(nodes)}"


def _first_step_cost(first: Any) -> str:
    """The warm-up step's RSS growth and CPU time, or a dash for a run without one."""
    if not isinstance(first, dict):
        return "—"
    return f"{num(first.get('rss_growth_kib'))} / {num(first.get('cpu_ms'))}"


def _log_check(logs: Any) -> str:
    if not logs:
        return "—"
    text = (f"{logs.get('steps_with_exactly_their_two_lines')}/{logs.get('steps')} steps exactly their lines, "
            f"{logs.get('foreign_lines')} lines from another step")
    missing, repeated = logs.get("steps_missing_lines"), logs.get("steps_with_repeated_lines")
    if missing or repeated:
        text += f" ({missing} missing lines, {repeated} repeated)"
    return text


def section_resource(data: dict) -> str:
    s = get(data, "sections", "resource")
    note = failed_note("resource", s)
    if note:
        return note
    rows = []
    for variant, label in (("watch", "ours: `resource_step` (watch)"), ("poll-5s", "Argo-style: GET every 5 s")):
        d = get(s, "reaction", variant) or {}
        trials = get(s, "trials", variant) or []
        after = [t.get("after_patch_response_s") for t in trials if t.get("after_patch_response_s") is not None]
        rt = [t.get("patch_round_trip_s") for t in trials if t.get("patch_round_trip_s") is not None]
        reqs = (trials[-1].get("requests") if trials else {}) or {}
        rows.append(
            [
                label,
                str(d.get("n")),
                dur(d.get("p50")),
                dur(d.get("p95")),
                dur(d.get("max")),
                dur(sorted(rt)[len(rt) // 2] if rt else None),
                dur(sorted(after)[len(after) // 2] if after else None),
                ", ".join(f"{k} {v}" for k, v in reqs.items()),
            ]
        )
    errors = {k: v for k, v in (s.get("errors") or {}).items() if v}
    return "\n".join(
        [
            table(["variant", "trials", "p50", "p95", "max", "PATCH round trip (p50)", "after PATCH response (p50)", "requests (last trial)"], rows),
            "",
            (f"Errors: {errors}\n" if errors else "")
            + f"Condition `{s.get('condition')}` on a `BenchWidget` (a CRD with a status subresource). Each trial "
            "creates the object through the variant, waits a seeded random 0.5–5.5 s (the same delays for both), "
            "then sets `status.phase=Ready` with a merge PATCH of `/status`. Reaction = the step function's "
            "return − the moment just before that PATCH was sent, so it includes the PATCH itself. Ours runs "
            "`k8s_step_operator.steps.entrypoints.resource_entrypoint(spec)`, the function ZenML executes for a "
            "`resource_step(..., success_condition=...)`. The baseline creates the same object and then GETs it "
            "every 5 s, judging it with the same `conditions.evaluate`. Trials alternate which variant goes first. "
            "ZenML's built-in step operator has no resource steps.",
        ]
    )


def section_failure(data: dict) -> str:
    s = get(data, "sections", "failure")
    note = failed_note("failure", s)
    if note:
        return note
    rows = [[label, describe_failure(s.get(label))] for label in (OURS, THEIRS) if s.get(label)]
    return "\n".join(
        [
            table(["operator", "outcome"], rows),
            "",
            f"One step with image `{get(data, 'plan', 'failure', 'image')}`, which no node can pull; `wait()` is "
            f"given {num(get(data, 'plan', 'failure', 'timeout'))} s. ZenML's operator reads only the Job's "
            "conditions, and a Job whose pod cannot pull its image never gets one, so its `wait()` polls forever "
            "(until `active_deadline_seconds`, if set). The bench cancels the step afterwards.",
        ]
    )


# ---------------------------------------------------------------------------------- page
def _measured_in(sittings: list[dict], i: int) -> list[str]:
    """The sections whose figures come from sitting ``i``: those it set out to run that no later sitting ran
    again (a resumed run runs only the sections missing or failed so far, such as one a stopped sitting was in)."""
    later = {section for s in sittings[i + 1:] for section in s.get("sections") or []}
    return [section for section in sittings[i].get("sections") or [] if section not in later]


def _when(data: dict) -> str:
    """When it ran: one sitting, or each sitting of a resumed run (same code and plan) with its sections."""
    sittings = data.get("sittings") or []
    if len(sittings) <= 1:
        return f"started {data.get('started')}, finished {data.get('finished', '(running)')}"
    parts = [
        f"{s.get('started')} → {s.get('finished', '(running)')} ({', '.join(_measured_in(sittings, i)) or 'nothing left'}"
        + (f"; load average at start → end {fmt_load(get(s, 'machine', 'load_average_start'))} → "
           f"{fmt_load(get(s, 'machine', 'load_average_end'))}" if s.get("machine") else "") + ")"
        for i, s in enumerate(sittings)
    ]
    return (f"run in {len(sittings)} sittings on fresh machines of the same kind, the same code and plan "
            f"(`--resume`; the machine rows below are the first sitting's): " + "; ".join(parts))


def render(data: dict) -> str:
    m = data.get("machine") or {}
    v = data.get("versions") or {}
    plan = data.get("plan") or {}
    mode = "quick (smoke) run — small counts, short steps" if plan.get("quick") else "full run"
    git = v.get("git") or {}
    out = [
        "# k8s step operator vs. ZenML's built-in Kubernetes step operator",
        "",
        f"_{mode}; {_when(data)}. Generated by `bench/run.py`; raw numbers in `bench/results.json`._",
        "",
        *[f"_Amended: {a}_\n" for a in data.get("amendments") or []],
        "Both operators ran in the same run, against the same local control plane (real etcd, kube-apiserver, "
        "controller-manager and scheduler; pods run by the upstream kubelet on containerd, real nodes), with the same "
        "step commands and default settings (namespace and cluster access only). \"Ours\" is the `k8s` flavor "
        "(`K8sStepOperator`), \"built-in\" is ZenML's `kubernetes` flavor (`KubernetesStepOperator`, a Job per "
        "step, polled).",
        "",
        "## Summary",
        "",
        table(["#", "measure", "target", "k8s (ours)", "kubernetes (built-in)", "built-in ÷ ours", "target met"], summary_rows(data)),
        "",
        "## Machine and versions",
        "",
        table(
            ["", ""],
            [
                ["cores", str(m.get("cores"))],
                ["CPU", str(m.get("cpu_model"))],
                ["memory", f"{m.get('memory_gib')} GiB"],
                ["OS", str(m.get("platform"))],
                ["CPU use of the idle cluster (cores)", str(m.get("idle_cluster_cores", "not measured"))],
                ["memory cgroups held by the kernel at the start, before → after dropping caches (earlier runs' pods)",
                 _memcgs(m.get("memory_cgroups_at_start"))],
                ["nice value of the kubelets, containerd and the pods (control plane and orchestrator: 0)",
                 _node_side(m.get("node_side"))],
                ["load average (1/5/15 min) at start → end", f"{fmt_load(m.get('load_average_start'))} → {fmt_load(m.get('load_average_end'))}"],
                ["Python", str(v.get("python"))],
                ["ZenML", str(v.get("zenml"))],
                ["kubernetes (Python client)", str(v.get("kubernetes_python_client"))],
                ["kube-apiserver / controller-manager / scheduler", str(v.get("kube_apiserver"))],
                ["etcd", str(v.get("etcd"))],
                ["k8s-step-operator", f"{v.get('k8s_step_operator')} at commit {git.get('commit')}"
                 + (" with uncommitted changes" if git.get("uncommitted_changes") else "")],
            ],
        ),
        "",
        "## How to run it",
        "",
        "    bash scripts/setup.sh                       # venv + control-plane binaries (once)",
        "    ~/.cache/k8s-step-operator/venv/bin/python bench/run.py            # everything (this file + results.json)",
        "    ~/.cache/k8s-step-operator/venv/bin/python bench/run.py --quick    # smoke run",
        "    ~/.cache/k8s-step-operator/venv/bin/python bench/run.py --only completion,scale --scale 1,10,100",
        "",
        f"This file came from: `{data.get('command')}`. The runner starts its own `LocalCluster` (the default "
        "nodes plus plain nodes enough for the largest scale run, `maxPods` 250 each; CPU and memory are this "
        "machine's; `fs.inotify.max_user_instances` raised from "
        f"{get(data, 'machine', 'inotify_max_user_instances', 'before')} to "
        f"{get(data, 'machine', 'inotify_max_user_instances', 'during')} for the run, as kind advises, since each "
        "followed log costs the kubelet one; the kubelets, containerd and all they start at a lower CPU priority "
        "than the control plane and the orchestrator (nice value in the table above), as on a cluster whose control "
        "plane has machines of its own: on 2 shared cores the nodes starting hundreds of pods would otherwise hold "
        "the apiserver's CPU and set every POST's time), runs every measurement in a fresh worker process "
        "(`python -m k8sbench.worker`), deletes each measurement's namespace (and waits until it is gone) before "
        "the next one, and removes the cluster and its tmp dir at the end. "
        "ZenML state lives in that tmp dir (`ZENML_CONFIG_PATH`); the user's ZenML config is never touched.",
        "",
        "How ZenML's operator is run without touching our environment: it is built in-process from its own "
        "flavor (`KubernetesStepOperatorFlavor().implementation_class(..., config=KubernetesStepOperatorConfig("
        "kubernetes_namespace=..., kubernetes_context=...))`, which is how ZenML builds any component) with "
        "`$KUBECONFIG` pointing at the local cluster; for the pipeline runs it is registered as a normal "
        "`--flavor=kubernetes` component in the tmp ZenML store (the flavor is always in the store; its "
        "`kubernetes<26` pin is not checked at registration or instantiation). No package is installed or "
        "downgraded. Its code runs unmodified; only in the pipeline process of measure 2 are its stack checks "
        "(`is_remote`, `validator`: they demand a remote ZenML server, container registry and image builder) "
        "switched off, and its component gets `ZENML_CONFIG_PATH` as a component environment variable and that "
        "directory mounted from the host by its `pod_settings`, so its pods find the local store and artifact "
        "store (ours does that itself with `local=True`).",
        "",
        "Percentiles: linear interpolation between order statistics (numpy's default). Ratios: built-in ÷ ours.",
        "",
        "## 1. Completion detection",
        "",
        section_completion(data),
        "",
        "## 2. End-to-end overhead in a ZenML pipeline",
        "",
        section_e2e(data),
        "",
        "## 3. API requests per step",
        "",
        section_requests(data),
        "",
        "## 4. Scale",
        "",
        section_scale(data),
        "",
        "## 5. Resource-step condition reaction",
        "",
        section_resource(data),
        "",
        "## Failure visibility: an image that cannot be pulled",
        "",
        section_failure(data),
        "",
        "## Notes",
        "",
        "* Where the built-in operator has no number: it opens no watch (it LISTs Jobs on a 1, 2, 4, 8, 16 s "
        "back-off), streams no logs, has no resource steps, and never reports a pod that cannot start "
        "(ImagePullBackOff, Unschedulable) — its `get_status` reads only Job conditions.",
        "* ZenML's dynamic pipelines do not call `wait()`: a monitor thread polls `get_status` every 10 s for "
        "every operator. For ours that poll reads the shared watch's cache (no API request), but the 10 s "
        "cadence is ZenML's and bounds completion detection there; section 1 is the static-pipeline path.",
        "* ZenML builds the stack's components inside every step's own process too, so the step operator's "
        "module is imported in each pod. A module that imports the Kubernetes client at the top (~900 "
        "modules) costs every step about 0.5 s there, before the step function runs and again at interpreter "
        "exit: a cProfile of the entrypoint in a pod showed 3,760 modules loaded against 2,731 for the plain "
        "subprocess, 865 of them `kubernetes.*`. Ours imports the client on first use (it is never used in "
        "the pod); ZenML's built-in operator imports it at the top, which is part of its row in section 2.",
        "* Timings depend on the machine being otherwise idle (see the load averages above); a `--quick` run "
        "has too few samples for its percentiles and overheads to mean much beyond \"it works\".",
        "* Both operators' steps run in containers on this machine (two kubelets); the apiserver, etcd and "
        "both nodes share its cores with the bench, so absolute numbers are those of a small, busy cluster.",
        "",
    ]
    return "\n".join(out)


def fmt_load(x: Any) -> str:
    if not x:
        return "—"
    return " / ".join(f"{float(v):.2f}" for v in x)


def _deletions(requests: Any) -> float | None:
    """Median over a requests section's steps of the DELETEs among all clients' step-related requests (ours
    deletes its Job at clean-up and the garbage collector and kubelet its pods and Secret; the built-in
    deletes nothing)."""
    counts = [
        sum(v for k, v in (step.get("all_clients_rows") or {}).items() if k.startswith("DELETE "))
        for step in (get(requests, "steps") or [])
    ]
    return statistics.median(counts) if counts else None

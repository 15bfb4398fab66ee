"""The apiserver's long-running request gauges (open pod watches, log streams), sampled from a child
process: reading and parsing ``/metrics`` every half second in the measured worker would count in its
memory and CPU time. The same child reads the apiserver's request durations at each *mark* the worker
sends (a line on its stdin), so that a window's server-side time per request is known without the worker
parsing ``/metrics`` either.

    python -m k8sbench.gauges KUBECONFIG   # prints "ready" once the baseline is read; samples until
                                           # stdin closes, then prints the peak rises (and the marks) as JSON
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from .common import Admin, diff, longrunning, request_durations, row_name

ROWS = {"watch_pods": ("WATCH", "", "pods", ""), "log_streams": ("CONNECT", "", "pods", "log"), "watch_jobs": ("WATCH", "batch", "jobs", "")}


class Gauges:
    """The parent's handle: :meth:`start` before the operator exists, :meth:`stop` for the peaks."""

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> "Gauges":
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "k8sbench.gauges", self.kubeconfig],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ.copy(),
        )
        assert self._proc.stdout is not None
        ready = self._proc.stdout.readline().strip()
        if ready != "ready":
            raise RuntimeError(f"gauge sampler did not start: {ready!r}")
        return self

    def mark(self, wait: bool = False) -> None:
        """Have the child read the apiserver's request durations now; ``wait``: until it has (a read of
        ``/metrics``, tens of ms), else the worker goes on at once."""
        assert self._proc is not None and self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write("mark\n")
        self._proc.stdin.flush()
        if wait:
            self._proc.stdout.readline()

    def stop(self) -> dict:
        assert self._proc is not None
        out, _ = self._proc.communicate("", timeout=60)
        return json.loads(out.splitlines()[-1])  # after the answers to unwaited marks


ALWAYS = (("POST", "batch", "jobs", ""), ("POST", "", "secrets", ""), ("POST", "", "pods", ""))


def between(first: dict, second: dict, top: int = 8) -> dict:
    """The requests the apiserver finished between two marks: per row, how many and their mean
    duration in ms (its own clock); the creates of Jobs, Secrets and pods and the ``top`` rows by count."""
    count = diff(second["count"], first["count"])
    total = diff(second["sum"], first["sum"])
    rows = [r for r in ALWAYS if count.get(r, 0) > 0]
    rows += [r for r, n in sorted(count.items(), key=lambda kv: -kv[1]) if n > 0 and r not in rows][:top]
    return {row_name(row): {"n": int(count[row]), "mean_ms": round(total.get(row, 0.0) * 1000 / count[row], 1)} for row in rows}


def sample(kubeconfig: str, interval: float = 0.5) -> dict:
    """Until stdin closes: the peak rise of each gauge over its value at the start."""
    admin = Admin(kubeconfig)
    base = longrunning(admin.metrics())
    peak = {k: 0.0 for k in ROWS}
    done = threading.Event()
    marks: list[dict] = []

    def watch_stdin() -> None:
        for _line in sys.stdin:  # each line asks for a mark
            try:
                marks.append(request_durations(admin.metrics()))
            except Exception:  # noqa: BLE001 - a lost mark leaves that window without server times
                marks.append({})
            print("marked", flush=True)
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print("ready", flush=True)
    while not done.wait(interval):
        try:
            now = longrunning(admin.metrics())
        except Exception:  # noqa: BLE001 - a missed sample is fine
            continue
        for key, row in ROWS.items():
            peak[key] = max(peak[key], now.get(row, 0) - base.get(row, 0))
    windows = [between(a, b) if a and b else None for a, b in zip(marks, marks[1:], strict=False)]
    return {**peak, "server_windows": windows}


if __name__ == "__main__":
    print(json.dumps(sample(sys.argv[1])), flush=True)

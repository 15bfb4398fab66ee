"""The apiserver's long-running request gauges (open pod watches, log streams), sampled from a child
process: reading and parsing ``/metrics`` every half second in the measured worker would count in its
memory and CPU time.

    python -m k8sbench.gauges KUBECONFIG   # prints "ready" once the baseline is read; samples until
                                           # stdin closes, then prints the peak rises as JSON
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from .common import Admin, longrunning

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

    def stop(self) -> dict:
        assert self._proc is not None
        out, _ = self._proc.communicate("", timeout=60)
        return json.loads(out)


def sample(kubeconfig: str, interval: float = 0.5) -> dict:
    """Until stdin closes: the peak rise of each gauge over its value at the start."""
    admin = Admin(kubeconfig)
    base = longrunning(admin.metrics())
    peak = {k: 0.0 for k in ROWS}
    done = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
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
    return peak


if __name__ == "__main__":
    print(json.dumps(sample(sys.argv[1])), flush=True)

"""State of a background local cluster for ``k8s-step-operator local-cluster up|down|status``.

``up`` starts a supervisor (``python -m k8sso_localcluster.serve
--root DIR``) in its own session; the supervisor runs a :class:`LocalCluster`
under ``DIR/state`` and writes, in ``DIR``:

- ``supervisor.pid``: its pid (removed when it exits);
- ``ready.json``: kubeconfig path and server, written once the nodes are Ready;
- ``status.json``: every component's pid and state, refreshed every few seconds;
- ``kubeconfig``: a copy of the admin kubeconfig (valid while it runs);
- ``supervisor.log`` and ``logs/``: kept after ``down`` for debugging.

Every process of the cluster has ``DIR/state`` on its command line, which is
how ``down`` verifies that nothing is left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .build import cache_root

SERVE_MODULE = "k8sso_localcluster.serve"


def default_root() -> Path:
    """``<cache_root()>/local-cluster``."""
    return cache_root() / "local-cluster"


@dataclass(frozen=True)
class ClusterDir:
    """The files of one background cluster."""

    root: Path

    @classmethod
    def at(cls, root: Optional[Path | str] = None) -> "ClusterDir":
        """The directory ``root`` (default :func:`default_root`), made absolute."""
        return cls(Path(root or default_root()).expanduser().resolve())

    @property
    def pid_file(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def ready_file(self) -> Path:
        return self.root / "ready.json"

    @property
    def status_file(self) -> Path:
        return self.root / "status.json"

    @property
    def log_file(self) -> Path:
        return self.root / "supervisor.log"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (readers never see half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def read_json(path: Path) -> Optional[dict]:
    """The JSON object in ``path``, or None if missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_state(cdir: ClusterDir) -> None:
    """Remove the cluster state and markers; keep the component logs of the last run in ``logs/``."""
    state_logs = cdir.state / "logs"
    if state_logs.is_dir():
        shutil.rmtree(cdir.logs, ignore_errors=True)
        shutil.move(str(state_logs), str(cdir.logs))
    shutil.rmtree(cdir.state, ignore_errors=True)
    for path in (cdir.ready_file, cdir.status_file, cdir.kubeconfig):
        path.unlink(missing_ok=True)


def _proc_state(pid: int) -> Optional[str]:
    """The one-letter state from /proc (R, S, Z, ...) or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (zombies count as dead)."""
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def supervisor_pid(cdir: ClusterDir) -> Optional[int]:
    """The pid of the live supervisor of ``cdir``, or None (stale pid files are ignored)."""
    try:
        pid = int(cdir.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if not alive(pid):
        return None
    cmd = _cmdline(pid)
    if SERVE_MODULE not in cmd or str(cdir.root) not in cmd:
        return None  # the pid was reused by something else
    return pid


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def leftover_processes(cdir: ClusterDir) -> list[tuple[int, str]]:
    """Live processes that belong to this cluster: its supervisor, or ``DIR/state`` on the command line."""
    marker = str(cdir.state)
    mine = _ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid in mine or not alive(pid):
            continue
        cmd = _cmdline(pid)
        if marker in cmd or (SERVE_MODULE in cmd and str(cdir.root) in cmd):
            found.append((pid, cmd.strip()))
    return found


@dataclass
class UpResult:
    """What ``up`` did."""

    pid: int
    already: bool
    kubeconfig: Path
    server: str = ""


@dataclass
class ClusterStatus:
    """What ``status`` found."""

    state: str  # running | starting | degraded | stopped
    pid: Optional[int] = None
    server: str = ""
    kubeconfig: Optional[Path] = None
    components: dict[str, dict[str, Any]] = field(default_factory=dict)
    leftovers: list[tuple[int, str]] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.state == "running"


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def up(cdir: ClusterDir, timeout: float = 240.0, nodes: bool = True) -> UpResult:
    """Start the supervisor unless it runs; wait until the cluster is ready.

    ``nodes=False`` starts the control plane only (no nodes).

    Raises:
        RuntimeError: If the supervisor dies or the cluster is not ready in time
            (the supervisor is then stopped again).
    """
    pid = supervisor_pid(cdir)
    already = pid is not None
    if pid is None:
        cdir.root.mkdir(parents=True, exist_ok=True)
        for stale in (cdir.ready_file, cdir.status_file, cdir.pid_file):
            stale.unlink(missing_ok=True)
        with open(cdir.log_file, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", SERVE_MODULE, "--root", str(cdir.root), "--timeout", str(timeout)]
                + ([] if nodes else ["--no-nodes"]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        pid = proc.pid
    deadline = time.monotonic() + timeout + 30
    while True:
        ready = read_json(cdir.ready_file)
        if ready and ready.get("pid") == pid:
            return UpResult(pid, already, Path(ready["kubeconfig"]), ready.get("server", ""))
        if not alive(pid):
            raise RuntimeError(
                f"the local cluster supervisor exited before the cluster was ready; "
                f"last lines of {cdir.log_file}:\n{_tail(cdir.log_file)}"
            )
        if time.monotonic() > deadline:
            stop_supervisor(pid)
            raise RuntimeError(
                f"the local cluster was not ready after {timeout:.0f}s; stopped it. "
                f"Last lines of {cdir.log_file}:\n{_tail(cdir.log_file)}"
            )
        time.sleep(0.2)


def stop_supervisor(pid: int, timeout: float = 90.0) -> bool:
    """SIGTERM the supervisor and wait; SIGKILL it after ``timeout``. True if it is gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(pid):
                return True
            time.sleep(0.1)
    return not alive(pid)


def down(cdir: ClusterDir, timeout: float = 90.0) -> tuple[bool, list[tuple[int, str]]]:
    """Stop the cluster; returns (was running, processes still left).

    Left-over cluster processes (e.g. after the supervisor was SIGKILLed) are
    terminated by pid; only processes carrying ``DIR/state`` are touched.
    """
    pid = supervisor_pid(cdir)
    was_running = pid is not None
    if pid is not None:
        stop_supervisor(pid, timeout)
    leftovers = leftover_processes(cdir)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not leftovers:
            break
        for other, _ in leftovers:
            try:
                os.kill(other, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and leftover_processes(cdir):
            time.sleep(0.1)
        leftovers = leftover_processes(cdir)
    if not leftovers and supervisor_pid(cdir) is None:
        remove_state(cdir)  # e.g. after the supervisor was SIGKILLed
        cdir.pid_file.unlink(missing_ok=True)
    return was_running, leftovers


def status(cdir: ClusterDir) -> ClusterStatus:
    """The supervisor's view (components) of the cluster; no API calls."""
    pid = supervisor_pid(cdir)
    if pid is None:
        return ClusterStatus("stopped", leftovers=leftover_processes(cdir))
    ready = read_json(cdir.ready_file)
    if not ready or ready.get("pid") != pid:
        return ClusterStatus("starting", pid)
    report = read_json(cdir.status_file) or {}
    components = report.get("components", {})
    for info in components.values():
        if info.get("state") == "running" and not alive(int(info.get("pid", 0))):
            info["state"] = "gone"
    state = "running" if all(c.get("state") == "running" for c in components.values()) else "degraded"
    return ClusterStatus(state, pid, ready.get("server", ""), Path(ready["kubeconfig"]), components)

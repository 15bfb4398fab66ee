"""Containers as local processes: spawn, stream logs, wait, signal.

A container is ``setpriv --pdeathsig KILL unshare --mount --pid --uts --fork
--kill-child --propagation private --mount-proc python -I -S shim.py SPEC``, started
in its own session by a thread that then blocks in ``waitid`` on it: the exit is seen
the moment it happens and reported through ``on_exit``. ``pdeathsig`` (tied to that
thread, which lives exactly as long as the process) and ``--kill-child`` make the
whole container die with the agent.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Callable

from .cgroups import CgroupManager
from .logs import MAX_LINE, ContainerLog
from .mountpoints import MountpointRegistry
from .security import RunAs

log = logging.getLogger(__name__)
SHIM = Path(__file__).with_name("shim.py")
_NS_FLAGS = ["--mount", "--pid", "--uts", "--fork", "--kill-child", "--propagation", "private", "--mount-proc"]


@dataclass
class Mount:
    """A bind mount of ``source`` (host path) at ``target`` inside the container."""

    source: str
    target: str
    readonly: bool = False
    file: bool = False


@dataclass
class LaunchSpec:
    key: str
    argv: list[str]
    env: dict[str, str]
    workdir: str
    run_dir: Path
    hostname: str
    mounts: list[Mount] = field(default_factory=list)
    memory_limit: int | None = None
    container: str = ""
    user: RunAs | None = None  # None: the agent's own credentials


@dataclass
class ExitInfo:
    exit_code: int
    signal: int | None
    reason: str
    started_at: float
    finished_at: float
    start_error: str | None = None


class Launcher:
    """How containers are wrapped on this machine (namespaces when possible)."""

    def __init__(self) -> None:
        self.prefix: list[str] = []
        self.namespaces = False
        unshare, setpriv = shutil.which("unshare"), shutil.which("setpriv")
        candidates = [[unshare, *_NS_FLAGS]] if unshare else []
        if unshare and os.geteuid() != 0:
            candidates.append([unshare, "--user", "--map-root-user", *_NS_FLAGS])
        for cand in candidates:
            if subprocess.run([*cand, "true"], capture_output=True).returncode == 0:
                self.prefix, self.namespaces = list(cand), True
                break
        if not self.namespaces:
            log.warning("unshare is unusable: containers run without private mount/pid namespaces or volumes")
        if setpriv:
            self.prefix = [setpriv, "--pdeathsig", "KILL", "--", *self.prefix]

    def argv(self, spec_path: Path) -> list[str]:
        return [*self.prefix, sys.executable, "-I", "-S", str(SHIM), str(spec_path)]


def _host_mounts(mounts: list[Mount]) -> list[Mount]:
    """Mounts whose target lies outside every other mount of the container (created on the host)."""
    targets = [m.target.rstrip("/") for m in mounts]
    return [m for m in mounts if not any(t != m.target.rstrip("/") and m.target.startswith(t + "/") for t in targets)]


class ContainerProcess:
    """One running container instance."""

    def __init__(
        self,
        spec: LaunchSpec,
        logfile: ContainerLog,
        launcher: Launcher,
        cgroups: CgroupManager,
        mountpoints: MountpointRegistry,
        on_exit: Callable[["ContainerProcess", ExitInfo], None],
    ) -> None:
        self.spec = spec
        self.log = logfile
        self._launcher = launcher
        self._cgroups = cgroups
        self._mountpoints = mountpoints
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._spawned = threading.Event()
        self._exited = threading.Event()
        self._spawn_error: BaseException | None = None
        self._reaped = False
        self._held: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.exit_info: ExitInfo | None = None

    @property
    def holder(self) -> str:
        return f"{os.getpid()}:{self.spec.key}"

    def start(self) -> None:
        """Spawn the container; return once it runs (or raise why it could not start)."""
        if self.spec.mounts and not self._launcher.namespaces:
            raise OSError("volume mounts need mount namespaces (run the node agent as root)")
        try:
            for m in _host_mounts(self.spec.mounts):
                self._held.append(self._mountpoints.acquire(m.target, self.holder, m.file))
        except OSError:
            self._release_mountpoints()
            raise
        threading.Thread(target=self._run, name=f"ctr-{self.spec.key}", daemon=True).start()
        self._spawned.wait()
        if self._spawn_error is not None:
            self._release_mountpoints()
            raise self._spawn_error

    def _release_mountpoints(self) -> None:
        for key in reversed(self._held):
            self._mountpoints.release(key, self.holder)
        self._held.clear()

    def _paths(self) -> tuple[Path, Path]:
        return self.spec.run_dir / f"{self.spec.key}.spec.json", self.spec.run_dir / f"{self.spec.key}.result.json"

    def _run(self) -> None:
        spec_path, result_path = self._paths()
        cgroup = None
        try:
            self.spec.run_dir.mkdir(parents=True, exist_ok=True)
            result_path.unlink(missing_ok=True)
            cgroup = self._cgroups.create(self.spec.key, self.spec.memory_limit)
            doc = {
                "argv": self.spec.argv,
                "env": self.spec.env,
                "workdir": self.spec.workdir,
                "hostname": self.spec.hostname if self._launcher.namespaces else None,
                "mounts": [m.__dict__ for m in self.spec.mounts],
                "private_mounts": self._launcher.namespaces,
                "user": asdict(self.spec.user) if self.spec.user else None,
                "cgroup_procs": str(cgroup.procs) if cgroup else None,
                "result": str(result_path),
            }
            fd = os.open(spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(doc, fh)
            self.proc = subprocess.Popen(
                self._launcher.argv(spec_path),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            )
            self.started_at = time.time()
        except BaseException as exc:  # noqa: BLE001 - handed to start()
            self._spawn_error = exc
            if cgroup is not None:
                cgroup.remove()
            self._spawned.set()
            return
        self._spawned.set()
        proc = self.proc
        pumps = [
            threading.Thread(target=self._pump, args=(proc.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._pump, args=(proc.stderr, "stderr"), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        with self._lock:
            self._reaped = True
        returncode = proc.wait()
        finished = time.time()
        for pump in pumps:
            pump.join(timeout=2.0)
        self.log.close()
        info = self._exit_info(returncode, result_path, cgroup, finished)
        if cgroup is not None:
            cgroup.remove()
        spec_path.unlink(missing_ok=True)
        result_path.unlink(missing_ok=True)
        self._release_mountpoints()
        self.exit_info = info
        try:
            self._on_exit(self, info)
        except Exception:  # noqa: BLE001 - a callback bug must not kill the thread silently
            log.exception("on_exit for %s failed", self.spec.key)
        finally:
            self._exited.set()

    def _exit_info(self, returncode: int, result_path: Path, cgroup, finished: float) -> ExitInfo:
        code, sig, start_error = (128 - returncode, -returncode, None) if returncode < 0 else (returncode, None, None)
        try:
            result = json.loads(result_path.read_text())
            code, sig, start_error = int(result["exitCode"]), result.get("signal"), result.get("startError")
        except (OSError, ValueError, KeyError):
            pass
        if start_error:
            reason = "StartError"
        elif cgroup is not None and cgroup.oom_killed():
            reason = "OOMKilled"
        else:
            reason = "Completed" if code == 0 else "Error"
        return ExitInfo(code, sig, reason, self.started_at, finished, start_error)

    def _pump(self, stream: IO[bytes], name: str) -> None:
        try:
            while True:
                line = stream.readline(MAX_LINE)
                if not line:
                    return
                self.log.write(name, line)
        except (OSError, ValueError):
            return
        finally:
            stream.close()

    # ------------------------------------------------------------------ control
    @property
    def running(self) -> bool:
        return self._spawned.is_set() and self._spawn_error is None and not self._exited.is_set()

    def signal(self, sig: int) -> None:
        """Signal the container's process group (its init forwards to the whole pid namespace)."""
        with self._lock:
            if self.proc is None or self._reaped:
                return
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float | None = None) -> bool:
        """True once the container has exited and on_exit ran."""
        return self._exited.wait(timeout)

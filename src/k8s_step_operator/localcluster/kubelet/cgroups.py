"""Memory limits with cgroups (v1 memory controller or v2), and OOM-kill detection.

Each container instance gets a child cgroup below the agent's own memory cgroup:
``<agent cgroup>/k8sso-<node>-<agent pid>/<pod uid>_<container>_<restart>`` (the pid keeps
agents of concurrent clusters apart; bases of dead agents are removed at start-up). The container's
init joins it before anything else runs; after exit the ``oom_kill`` counter
(v1 ``memory.oom_control``, v2 ``memory.events``) says whether the kernel killed it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
_ROOT = Path("/sys/fs/cgroup")


def _own_paths() -> tuple[Path | None, Path | None]:
    """(v1 memory cgroup dir, v2 cgroup dir) of this process, when mounted."""
    v1 = v2 = None
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(",") and (_ROOT / "memory").is_dir():
            v1 = _ROOT / "memory" / path.lstrip("/")
        elif controllers == "" and (_ROOT / "cgroup.controllers").exists():
            v2 = _ROOT / path.lstrip("/")
    return v1, v2


def _sweep(parent: Path) -> None:
    """Remove the (empty) cgroups left by agents that are gone."""
    for base in parent.glob("k8sso-*-*"):
        pid = base.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        for child in base.iterdir():
            if child.is_dir():
                try:
                    child.rmdir()
                except OSError:
                    pass
        try:
            base.rmdir()
        except OSError:
            pass


class Cgroup:
    """One container instance's cgroup."""

    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def oom_killed(self) -> bool:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        except (OSError, ValueError):
            pass
        return False

    def remove(self) -> None:
        try:
            self.path.rmdir()
        except OSError:
            pass


class CgroupManager:
    """Creates per-container memory cgroups, or reports that it cannot (``usable`` is False)."""

    def __init__(self, node: str) -> None:
        self.base: Path | None = None
        self.version = 0
        self.reason = ""
        v1, v2 = _own_paths()
        try:
            if v1 is not None and os.access(v1, os.W_OK):
                _sweep(v1)
                self.base, self.version = v1 / f"k8sso-{node}-{os.getpid()}", 1
                self.base.mkdir(exist_ok=True)
            elif v2 is not None and os.access(v2, os.W_OK):
                self.base, self.version = self._v2_base(v2, node), 2
            else:
                self.reason = "no writable memory cgroup (not root, or cgroupfs read-only)"
        except OSError as exc:
            self.base, self.version = None, 0
            self.reason = f"cannot create a memory cgroup: {exc}"
        if self.base is None:
            log.warning("memory limits are not enforced: %s", self.reason)
        else:
            log.info("memory limits enforced with cgroup v%d under %s", self.version, self.base)

    @staticmethod
    def _v2_base(own: Path, node: str) -> Path:
        _sweep(own)
        base = own / f"k8sso-{node}-{os.getpid()}"
        base.mkdir(exist_ok=True)
        if "memory" not in (base / "cgroup.controllers").read_text().split():
            raise OSError("the memory controller is not delegated to this cgroup")
        (base / "cgroup.subtree_control").write_text("+memory")
        return base

    @property
    def usable(self) -> bool:
        return self.base is not None

    def create(self, name: str, memory_limit: int | None) -> Cgroup | None:
        """A cgroup for one container instance (None when cgroups are unusable)."""
        if self.base is None:
            return None
        path = self.base / name
        try:
            path.mkdir(exist_ok=True)
            if memory_limit:
                if self.version == 1:
                    (path / "memory.limit_in_bytes").write_text(str(memory_limit))
                else:
                    (path / "memory.max").write_text(str(memory_limit))
                    if (path / "memory.swap.max").exists():
                        (path / "memory.swap.max").write_text("0")
        except OSError as exc:
            log.warning("cgroup %s: %s", path, exc)
            try:
                path.rmdir()
            except OSError:
                pass
            return None
        return Cgroup(path, self.version)

    def cleanup(self) -> None:
        if self.base is None:
            return
        for child in self.base.glob("*"):
            if child.is_dir():
                try:
                    child.rmdir()
                except OSError:
                    pass
        try:
            self.base.rmdir()
        except OSError:
            pass

"""Mountpoints that containers need on the shared host filesystem, created and removed with care.

Containers mount their volumes in private mount namespaces, but the directories (or
empty files) they mount onto live on the host's filesystem. A mountpoint created for
a container is removed when the last container using it (in any node agent on this
machine) is gone, and only if it is still empty: removing a directory that is a
mountpoint in another namespace would silently detach that mount (Linux >= 3.18).
The registry is one JSON file guarded by ``flock``; holders are ``<pid>:<token>`` and
holders whose process is gone are ignored.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

DEFAULT_REGISTRY = Path(os.environ.get("K8SSO_MOUNTPOINT_REGISTRY", "/tmp/k8s-step-operator-mountpoints"))


class MountpointRegistry:
    """Create-or-reuse mountpoints; release them when no holder is left."""

    def __init__(self, directory: Path = DEFAULT_REGISTRY) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._file = directory / "registry.json"

    @contextmanager
    def _locked(self) -> Iterator[dict]:
        with open(self.directory / "registry.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = json.loads(self._file.read_text()) if self._file.exists() else {}
            except ValueError:
                state = {}
            yield state
            tmp = self._file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self._file)

    @staticmethod
    def _alive(holder: str) -> bool:
        pid = int(holder.split(":", 1)[0])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def acquire(self, target: str, holder: str, is_file: bool) -> str:
        """Make sure ``target`` exists (creating missing parents); return its registry key."""
        with self._locked() as state:
            parts = Path(os.path.abspath(target)).parts
            for i in range(2, len(parts) + 1):
                path = os.path.join(*parts[:i])
                if os.path.lexists(path):
                    continue
                if i == len(parts) and is_file:
                    with open(path, "a"):
                        pass
                else:
                    os.mkdir(path, 0o755)
                state[os.path.realpath(path)] = {"holders": []}
            key = os.path.realpath(target)
            for path in _self_and_ancestors(key):
                if path in state:
                    entry = state[path]
                    entry["holders"] = [h for h in entry["holders"] if self._alive(h)] + [holder]
            return key

    def release(self, key: str, holder: str) -> None:
        """Drop ``holder`` from ``key`` and its parents; remove created paths nobody holds, if empty."""
        with self._locked() as state:
            for path in _self_and_ancestors(key):  # deepest first
                entry = state.get(path)
                if entry is None:
                    continue
                entry["holders"] = [h for h in entry["holders"] if h != holder and self._alive(h)]
                if not entry["holders"]:
                    _remove_if_empty(path)
                    del state[path]


    def sweep(self) -> None:
        """Remove (if empty) mountpoints whose holders are all gone, e.g. after an agent was killed."""
        with self._locked() as state:
            for path in sorted(state, key=len, reverse=True):
                entry = state[path]
                entry["holders"] = [h for h in entry["holders"] if self._alive(h)]
                if not entry["holders"]:
                    _remove_if_empty(path)
                    del state[path]


def _self_and_ancestors(path: str) -> list[str]:
    parts = Path(path).parts
    return [os.path.join(*parts[:i]) for i in range(len(parts), 1, -1)]


def _remove_if_empty(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)
        elif os.path.isfile(path) and os.path.getsize(path) == 0:
            os.unlink(path)
    except OSError:
        pass

"""From a pod's container spec to what the runtime starts: argv, env, mounts, working dir, memory limit."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

from .envvars import ConfigError, expand
from .quantity import parse_quantity
from .runtime import Mount
from .volumes import HostVolume

NO_COMMAND = (
    "no command specified: a process node ignores images (and so their ENTRYPOINT/CMD); "
    "set the container's command or args"
)


def argv_for(container: dict, env: dict[str, str]) -> list[str]:
    """command + args with $(VAR) expansion; no command → args; neither → ValueError."""
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    argv = command + args if command else args
    if not argv:
        raise ValueError(NO_COMMAND)
    return [expand(a, env.get) for a in argv]


def memory_limit(container: dict) -> int | None:
    raw = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    return int(parse_quantity(raw)) if raw else None


def _inside(path: Path, root: Path) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip("/") + "/")


# Directories a container image would give each container privately. ZenML's entrypoint unpacks the
# step's code into /app (its images' WORKDIR); without this every pod would share the host's /app.
IMAGE_PRIVATE_DIRS = ("/app",)


def mounts_for(container: dict, volumes: dict[str, HostVolume], env: dict[str, str],
               termination_log: Path | None, image_root: Path | None = None,
               image_owner: tuple[int, int] | None = None) -> list[Mount]:
    """The container's bind mounts, parents before children; raise ConfigError like the kubelet.

    With ``image_root``, each of ``IMAGE_PRIVATE_DIRS`` not mounted by a volume is a private
    directory under it, as if it came from the container's image (owned by ``image_owner``,
    a (uid, gid), as if the image made it for the container's user).
    """
    mounts: list[Mount] = []
    for vm in container.get("volumeMounts") or []:
        vol = volumes.get(vm["name"])
        if vol is None:
            raise ConfigError(f'cannot find volume "{vm["name"]}" to mount into container "{container["name"]}"')
        source = vol.path
        sub = vm.get("subPath") or (expand(vm["subPathExpr"], env.get) if vm.get("subPathExpr") else "")
        if sub:
            if os.path.isabs(sub) or ".." in Path(sub).parts:
                raise ConfigError(f"subPath {sub!r} must be a relative path without '..'")
            source = vol.path / sub
            if not os.path.lexists(source):
                if vol.is_file:
                    raise ConfigError(f"subPath {sub!r} of volume {vm['name']!r} does not exist")
                source.mkdir(parents=True, mode=0o755, exist_ok=True)
            if not _inside(source, vol.path):
                raise ConfigError(f"subPath {sub!r} of volume {vm['name']!r} points outside the volume")
        target = vm["mountPath"] if vm["mountPath"].startswith("/") else "/" + vm["mountPath"]
        mounts.append(Mount(str(source), os.path.normpath(target), bool(vm.get("readOnly")) or vol.readonly,
                            os.path.isfile(source)))
    if termination_log is not None:
        path = container.get("terminationMessagePath") or "/dev/termination-log"
        if not any(m.target == path for m in mounts) and os.path.isdir(os.path.dirname(path) or "/"):
            mounts.append(Mount(str(termination_log), path, False, True))
    if image_root is not None:
        for target in IMAGE_PRIVATE_DIRS:
            if not any(m.target == target for m in mounts):
                source = image_root / target.strip("/")
                source.mkdir(parents=True, exist_ok=True)
                if image_owner is not None:
                    with suppress(PermissionError):  # an agent without root cannot: the user's start fails anyway
                        os.chown(source, *image_owner)
                mounts.append(Mount(str(source), target, False, False))
    return sorted(mounts, key=lambda m: len(Path(m.target).parts))


def termination_message(container: dict, message_file: Path, exit_code: int, log_path: Path | None) -> str | None:
    """The terminated.message: the message file, or (FallbackToLogsOnError) the log tail on failure."""
    try:
        text = message_file.read_bytes()[:4096].decode("utf-8", "replace")
    except OSError:
        text = ""
    if text:
        return text
    if container.get("terminationMessagePolicy") == "FallbackToLogsOnError" and exit_code != 0 and log_path:
        try:
            lines = log_path.read_bytes().splitlines()[-80:]
        except OSError:
            return None
        out = []
        for line in lines:
            parts = line.split(b" ", 3)
            if len(parts) == 4:
                out.append(parts[3] + (b"\n" if parts[2] == b"F" else b""))
        return b"".join(out)[-2048:].decode("utf-8", "replace") or None
    return None

"""Container init: PID 1 of a container's private pid/mount namespace (standard library only).

Run as ``python -I -S shim.py SPEC.json`` under ``unshare --mount --pid --uts --fork
--kill-child --mount-proc``. It joins the memory cgroup, sets the hostname, makes the
directories a non-root ``user`` must pass through searchable (in this namespace only),
bind-mounts the volumes, then forks the container's command (in its own process group,
with the ``user``'s groups, gid and uid; the shim stays root), forwards SIGTERM/SIGINT/
SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to every process of the namespace, reaps orphans, and
when the command exits writes ``{"exitCode", "signal", "startError"}`` to the result
file and exits with the same code. Its exit kills every process left in the namespace,
so nothing a container started outlives it.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import stat
import sys

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _enc(value: str | None) -> bytes | None:
    return value.encode() if value is not None else None


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    if _libc.mount(_enc(source), _enc(target), _enc(fstype), ctypes.c_ulong(flags), _enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source or fstype} on {target}: {os.strerror(err)}")


def setup_mounts(mounts: list[dict]) -> None:
    """Bind each volume at its target (parents first); honour readOnly."""
    for m in mounts:
        target = m["target"]
        if not os.path.lexists(target):  # inside another volume of this container: create it there
            if m.get("file"):
                open(target, "a").close()
            else:
                os.makedirs(target, exist_ok=True)
        _mount(m["source"], target, None, MS_BIND | MS_REC)
        if m.get("readonly"):
            _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _searchable(st: os.stat_result, uid: int, groups: list[int]) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & 0o100)
    return bool(st.st_mode & (0o010 if st.st_gid in groups else 0o001))


def _reopen(path: str, st: os.stat_result) -> None:
    """Cover ``path`` with a searchable tmpfs holding its entries (bind-mounted back, symlinks copied)."""
    fd = os.open(path, os.O_PATH | os.O_DIRECTORY)
    try:
        names = os.listdir(path)
        mode = stat.S_IMODE(st.st_mode) | 0o111
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode:o},uid={st.st_uid},gid={st.st_gid}")
        for name in names:
            source, target = f"/proc/self/fd/{fd}/{name}", os.path.join(path, name)
            kind = os.lstat(source).st_mode
            if stat.S_ISLNK(kind):
                os.symlink(os.readlink(source), target)
                continue
            if stat.S_ISDIR(kind):
                os.mkdir(target)
            else:
                open(target, "a").close()
            _mount(source, target, None, MS_BIND | MS_REC)
    finally:
        os.close(fd)


def _needed_dirs(spec: dict) -> list[str]:
    """Directories the command must reach: its working dir, PATH and where its executable really is."""
    dirs = [d for d in spec["env"].get("PATH", "").split(":") if d.startswith("/")]
    argv0 = spec["argv"][0]
    found = [f for f in ([argv0] if "/" in argv0 else [os.path.join(d, argv0) for d in dirs]) if os.path.isfile(f)]
    paths = [spec["workdir"], *dirs, *(os.path.dirname(os.path.realpath(f)) for f in found[:1])]
    return list(dict.fromkeys([*paths, *map(os.path.realpath, paths)]))


def open_up(spec: dict) -> None:
    """Let a non-root user through every directory of ``_needed_dirs`` (like an image's world-readable tree)."""
    user = spec.get("user")
    if not user or user["uid"] == 0 or not spec.get("private_mounts"):
        return
    for path in _needed_dirs(spec):
        current = "/"
        for part in os.path.normpath(path).split("/"):
            current = os.path.join(current, part)
            try:
                st = os.stat(current)
            except OSError:
                break
            if not stat.S_ISDIR(st.st_mode):
                break
            if not _searchable(st, user["uid"], user["groups"]):
                _reopen(current, st)


def _finish(result: str, code: int, sig: int | None = None, error: str | None = None) -> None:
    tmp = result + ".tmp"
    with open(tmp, "w") as fh:
        json.dump({"exitCode": code, "signal": sig, "startError": error}, fh)
    os.replace(tmp, result)
    sys.stdout.flush()
    os._exit(code)


_child_pgid = 0


def _forward(signum: int, _frame: object) -> None:
    try:
        if os.getpid() == 1:
            os.kill(-1, signum)  # every process of this pid namespace except init
        elif _child_pgid:
            os.killpg(_child_pgid, signum)  # no pid namespace: never kill(-1) here
    except OSError:
        pass


def _become(user: dict | None) -> None:
    """Take the container user's groups, gid and uid (a non-zero uid drops root's capabilities)."""
    if not user:
        return
    try:
        os.setgroups(user["groups"])
        os.setgid(user["gid"])
        os.setuid(user["uid"])
    except OSError as exc:
        raise RuntimeError(f"cannot run as uid {user['uid']} gid {user['gid']}: {exc.strerror}") from None


def _exec_child(spec: dict, errw: int) -> None:
    try:
        os.setpgid(0, 0)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, *FORWARDED):
            signal.signal(sig, signal.SIG_DFL)
        _become(spec.get("user"))
        os.chdir(spec["workdir"])
        os.execvpe(spec["argv"][0], spec["argv"], spec["env"])
    except RuntimeError as exc:
        os.write(errw, str(exc).encode())
    except BaseException as exc:  # noqa: BLE001 - reported through the pipe
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, FileNotFoundError) and "/" not in spec["argv"][0]:
            reason = "executable file not found in $PATH"
        os.write(errw, f'exec: "{spec["argv"][0]}": {reason}'.encode())
    os._exit(127)


def main(spec_path: str) -> None:
    with open(spec_path) as fh:
        spec = json.load(fh)
    result = spec["result"]
    try:
        if spec.get("cgroup_procs"):
            with open(spec["cgroup_procs"], "w") as fh:
                fh.write("0")
        if spec.get("hostname"):
            try:
                socket.sethostname(spec["hostname"])
            except OSError:
                pass
        open_up(spec)
        setup_mounts(spec.get("mounts", []))
        os.makedirs(spec["workdir"], exist_ok=True)
    except OSError as exc:
        _finish(result, 128, error=f"container setup failed: {exc}")
    for sig in FORWARDED:
        signal.signal(sig, _forward)
    errr, errw = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(errr)
        _exec_child(spec, errw)
    os.close(errw)
    global _child_pgid
    _child_pgid = pid
    chunks = []
    while True:
        chunk = os.read(errr, 4096)  # EOF once exec succeeded (the pipe is close-on-exec)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(errr)
    while True:
        try:
            wpid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            status = 0
            break
        if wpid == pid:
            break
    if chunks:
        _finish(result, 128, error=b"".join(chunks).decode("utf-8", "replace"))
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        _finish(result, 128 - code, sig=-code)
    _finish(result, code)


if __name__ == "__main__":
    main(sys.argv[1])

"""Container logs on disk in the CRI format, and reading them like the kubelet does.

Each container instance writes ``<state>/logs/<ns>_<pod>_<uid>/<container>/<restart>.log``
with lines ``<RFC3339Nano> <stdout|stderr> <F|P> <text>`` (P = partial line). Readers
are woken through a condition variable, so ``follow`` sees each line the moment it is
written and ends when the container has terminated and everything was read.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .timeutil import format_ts, parse_ts

MAX_LINE = 16 * 1024  # longer lines are split into partial (P) records, like the CRI does


class ContainerLog:
    """One container instance's log file; writers append records, followers wait for them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab")
        self.size = self._file.tell()
        self.closed = False
        self.cond = threading.Condition()

    def write(self, stream: str, data: bytes) -> None:
        """Record ``data`` (one line, with or without its trailing newline) from ``stream``."""
        full = data.endswith(b"\n")
        body = data[:-1] if full else data
        record = f"{format_ts(time.time_ns())} {stream} {'F' if full else 'P'} ".encode() + body + b"\n"
        with self.cond:
            if self.closed:
                return
            self._file.write(record)
            self._file.flush()
            self.size += len(record)
            self.cond.notify_all()

    def close(self) -> None:
        """The container terminated: no more records; followers finish."""
        with self.cond:
            if not self.closed:
                self.closed = True
                self._file.close()
            self.cond.notify_all()


@dataclass
class LogOptions:
    follow: bool = False
    timestamps: bool = False
    since_ns: int | None = None
    tail_lines: int | None = None
    limit_bytes: int | None = None


def _records(data: bytes) -> Iterator[tuple[int, bytes, bytes, int]]:
    """(end offset, timestamp, rendered line, ts_ns) for each complete record in ``data``."""
    pos = 0
    while True:
        end = data.find(b"\n", pos)
        if end == -1:
            return
        line = data[pos:end]
        pos = end + 1
        parts = line.split(b" ", 3)
        if len(parts) < 3:
            continue
        ts, _stream, tag = parts[0], parts[1], parts[2]
        text = parts[3] if len(parts) == 4 else b""
        try:
            ts_ns = parse_ts(ts.decode())
        except ValueError:
            continue
        yield pos, ts, text + (b"\n" if tag == b"F" else b""), ts_ns


def _tail_offset(data: bytes, lines: int) -> int:
    if lines <= 0:
        return len(data)
    pos = len(data)
    for _ in range(lines):
        nl = data.rfind(b"\n", 0, max(pos - 1, 0))
        if nl == -1:
            return 0
        pos = nl + 1
    return pos


def read_log(log: ContainerLog | Path, opts: LogOptions) -> Iterator[bytes]:
    """Rendered log output; an empty bytes object means 'flush now, about to wait'."""
    live = log if isinstance(log, ContainerLog) else None
    path = log.path if isinstance(log, ContainerLog) else log
    remaining = opts.limit_bytes
    with open(path, "rb") as fh:
        if live is not None:
            with live.cond:
                size = live.size
        else:
            size = path.stat().st_size
        data = fh.read(size)
        pos = _tail_offset(data, opts.tail_lines) if opts.tail_lines is not None else 0
        while True:
            consumed = 0
            for end, ts, text, ts_ns in _records(data[pos:]):
                consumed = end
                if opts.since_ns is not None and ts_ns < opts.since_ns:
                    continue
                out = (ts + b" " + text) if opts.timestamps else text
                if remaining is not None:
                    out = out[:remaining]
                    remaining -= len(out)
                yield out
                if remaining is not None and remaining <= 0:
                    return
            pos += consumed
            if not opts.follow or live is None:
                return
            yield b""  # flush; also a heartbeat that lets the server notice a client that hung up
            with live.cond:
                if live.size <= size and not live.closed:
                    live.cond.wait(timeout=5)
                new_size, finished = live.size, live.closed
            if new_size > size:
                fh.seek(size)
                data = data[pos:] + fh.read(new_size - size)
                pos = 0
                size = new_size
                continue
            if finished:
                return


@dataclass
class PodLogs:
    """The log files of one pod's containers, by container name, oldest instance first."""

    namespace: str
    name: str
    uid: str
    directory: Path
    containers: dict[str, list[ContainerLog]]
    waiting_reason: Callable[[str], str | None] = field(default=lambda _name: None)


class LogStore:
    """Every pod's logs on this node; looked up by the log endpoint by namespace and pod name."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pods: dict[str, PodLogs] = {}

    def register(self, namespace: str, name: str, uid: str, containers: list[str],
                 waiting_reason: Callable[[str], str | None]) -> PodLogs:
        with self._lock:
            pod = self._pods.get(uid)
            if pod is None:
                pod = PodLogs(namespace, name, uid, self.root / f"{namespace}_{name}_{uid}",
                              {c: [] for c in containers}, waiting_reason)
                self._pods[uid] = pod
            return pod

    def new_instance(self, pod: PodLogs, container: str, restart: int) -> ContainerLog:
        log = ContainerLog(pod.directory / container / f"{restart}.log")
        with self._lock:
            pod.containers.setdefault(container, []).append(log)
        return log

    def lookup(self, namespace: str, name: str) -> PodLogs | None:
        with self._lock:
            found = [p for p in self._pods.values() if p.namespace == namespace and p.name == name]
        return found[-1] if found else None

    def drop(self, uid: str) -> None:
        with self._lock:
            pod = self._pods.pop(uid, None)
        if pod is None:
            return
        for logs in pod.containers.values():
            for log in logs:
                log.close()
        shutil.rmtree(pod.directory, ignore_errors=True)

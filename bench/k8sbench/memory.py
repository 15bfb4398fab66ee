"""Where a worker's memory is when its RSS peaks (development: ``K8SBENCH_MEMORY=/tmp/mem/m``).

Not part of a measured run: tracemalloc slows every allocation and its traces take memory of their own
(``K8SBENCH_MEMORY_TRACE=0`` leaves it off). At the window's start a baseline is taken; then, whenever the RSS
has grown by another 256 KiB (``K8SBENCH_MEMORY_STEP_KIB``) since the last look, a new look: Python's
allocations (tracemalloc, compared with the baseline by line), C's (glibc ``mallinfo2``: OpenSSL's buffers are
there) and the mappings' RSS by kind (``/proc/self/smaps``). The last look (the peak) is written to
``<prefix>-<operator>-<N>-<pid>.txt``.
"""

from __future__ import annotations

import ctypes
import os
import threading
import tracemalloc
from typing import Any

import psutil

STEP = int(os.environ.get("K8SBENCH_MEMORY_STEP_KIB", "256")) * 1024
TRACE = os.environ.get("K8SBENCH_MEMORY_TRACE", "1") != "0"  # 0: no tracemalloc (its traces are malloc'd too)
ARENA = 64 << 20  # a glibc thread arena's heap: an anonymous mapping aligned to its 64 MiB maximum


MALLINFO2 = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in MALLINFO2]


def mallinfo() -> dict[str, int]:
    """glibc's heap figures: ``uordblks`` in use, ``fordblks`` free but kept, ``hblkhd`` in mmapped blocks."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return {name: int(getattr(info, name)) for name in MALLINFO2}


def smaps() -> dict[str, int]:
    """RSS (KiB) of this process's mappings by kind: heap (the main arena), thread arenas (glibc's per-thread
    heaps), thread stacks (8 MiB anonymous), other anonymous (pymalloc's arenas, large blocks), files."""
    out: dict[str, int] = {}
    kind, size = "", 0
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                start, end = (int(x, 16) for x in head[0].split("-"))
                size = end - start
                path = head[5] if len(head) > 5 else ""
                kind = ("heap" if path == "[heap]" else "file" if path
                        else "stack(8MiB)" if size in (8 << 20, (8 << 20) + 4096)
                        else "thread arena" if start % ARENA == 0 and size <= ARENA else "anon")
            elif head[0] == "Rss:":
                out[kind] = out.get(kind, 0) + int(head[1])
    return out


def _snapshot() -> tracemalloc.Snapshot | None:
    """Python's allocations now, when tracemalloc is on."""
    return tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None


class MemoryLooks:
    """The looks described above, from a thread of their own."""

    def __init__(self, prefix: str, label: str) -> None:
        self.path = f"{prefix}-{label}-{os.getpid()}.txt"
        self._proc = psutil.Process()
        if TRACE:
            tracemalloc.start(30)
        self._base = _snapshot()
        self._base_c = mallinfo()
        self._base_maps = smaps()
        self._rss0 = self._last = self._proc.memory_info().rss
        self._look: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-looks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            rss = self._proc.memory_info().rss
            if rss >= self._last + STEP:
                self._last = rss
                self._look = {"rss": rss, "snapshot": _snapshot(), "c": mallinfo(),
                              "maps": smaps(),
                              "threads": threading.active_count()}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        tracemalloc.stop()  # a no-op when it was never started
        look = self._look
        with open(self.path, "w") as out:
            if look is None:
                out.write(f"the RSS never grew by {STEP // 1024} KiB\n")
                return
            out.write(f"RSS growth: {(look['rss'] - self._rss0) / 1024:.0f} KiB; threads {look['threads']}\n")
            c0, c1 = self._base_c, look["c"]
            out.write("malloc: " + ", ".join(f"{k} {(c1[k] - c0[k]) / 1024:+.0f} KiB" for k in ("uordblks", "fordblks", "hblkhd", "arena")) + "\n")
            m0, m1 = self._base_maps, look["maps"]
            out.write("maps RSS: " + ", ".join(f"{k} {m1.get(k, 0) - m0.get(k, 0):+d} KiB" for k in sorted(set(m0) | set(m1))) + "\n")
            if look["snapshot"] is None or self._base is None:
                return
            for stat in look["snapshot"].compare_to(self._base, "lineno")[:30]:
                out.write(f"{stat}\n")
            out.write("\n")
            stats = look["snapshot"].compare_to(self._base, "traceback")
            total = sum(s.size_diff for s in stats)
            out.write(f"python (tracemalloc) growth: {total / 1024:.0f} KiB\n\n")
            for stat in stats[:40]:
                out.write(f"{stat.size_diff / 1024:+.1f} KiB in {stat.count_diff:+d} blocks\n")
                for frame in stat.traceback.format()[-30:]:
                    out.write(f"    {frame}\n")

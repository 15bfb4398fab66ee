"""Which steps share one environment Secret: those of one run and namespace submitted while the previous
Secret's POST was out. No API calls: the operator sends what :meth:`SecretBatches.hand_in` and
:meth:`SecretBatches.sent` give back, and deletes what :meth:`SecretBatches.release` gives back.

A step *joins* the open batch of its key before its Job's POST (its pod then names the batch's Secret)
and *hands in* its created Job after it, or *withdraws* when the POST failed. With no POST out for the
key, the first hand-in closes the batch (or starts its linger, below): it goes once everyone who joined
has handed in or withdrawn. While a POST is out, the next batch fills; its POST goes when the previous one
is done. So one step alone gets its Secret right after its Job (a quiet spell later with a linger), and a
fan-out of N steps costs far fewer than N Secrets. A batch is *released* once every member's pods have read it (or the member is gone): the
Secret is then deleted, long before its Jobs.

With a *linger* (``quiet`` > 0), the first hand-in with no POST out does not close the batch: it stays
open while steps keep joining, until nobody has joined or handed in for ``quiet`` seconds and nobody is
mid-POST, or ``max_linger`` seconds after that first hand-in. Steps submitted back to back from one
thread then share a Secret too. The bound matters: a pod whose Secret is not there when the kubelet
builds its container waits for the kubelet's retry (~13 s measured here), and the kubelet reaches that
point ~0.9 s after the Job's creation on an idle node of the local cluster (measured).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from .jobs import reference

MAX_MEMBERS = 100  # steps per Secret
MAX_BYTES = 512 * 1024  # environment bytes per Secret (the API server takes 1 MiB)


@dataclass
class Member:
    """One step of a batch: its Submission, its created Job's :func:`~.jobs.reference` and its own Secret
    (keys already the step's; emptied once the batch's POST is answered: an environment is held no longer
    than it is needed)."""

    sub: Any
    job: dict
    secret: dict
    released: bool = False


@dataclass(eq=False)
class Batch:
    """One Secret shared by the steps that joined it."""

    key: Tuple[str, str]  # (namespace, run id)
    name: str
    joined: int = 0  # joined, neither handed in nor withdrawn yet
    members: List[Member] = field(default_factory=list)
    size: int = 0
    closed: bool = False  # takes no more steps
    lingering: bool = False  # open after its first hand-in with no POST out, until :meth:`SecretBatches.close`
    first: float = 0.0  # clock at its first hand-in, when lingering
    last: float = 0.0  # clock at its last join or hand-in, when lingering
    out: bool = False  # handed out for its POST
    created: bool = False  # its POST succeeded
    deleted: bool = False  # handed out for deletion
    done: "Future[None]" = field(default_factory=Future)  # set when its POST has been answered


def _size(secret: dict) -> int:
    return sum(len(k) + len(str(v)) for k, v in (secret.get("stringData") or {}).items())


class SecretBatches:
    """The open batch per key (namespace, run), and the POST out per key (at most one)."""

    def __init__(
        self, max_members: int = MAX_MEMBERS, max_bytes: int = MAX_BYTES, quiet: float = 0.0,
        max_linger: float = 0.0, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_members = max_members
        self.max_bytes = max_bytes
        self.quiet = quiet
        self.max_linger = max_linger
        self._clock = clock
        self._lock = threading.Lock()
        self._open: Dict[Tuple[str, str], Batch] = {}
        self._busy: set = set()  # keys with a batch closed and not yet answered
        self._of: Dict[str, Batch] = {}  # Job name -> its batch, until released

    def join(self, key: Tuple[str, str], own_name: str) -> Batch:
        """The batch a step about to POST its Job joins (a new one named ``own_name`` if none is open)."""
        with self._lock:
            batch = self._open.get(key)
            if batch is None:
                batch = self._open[key] = Batch(key, own_name)
            batch.joined += 1
            batch.last = self._clock()
            return batch

    def hand_in(self, batch: Batch, sub: Any, job: dict, secret: dict) -> Optional[Batch]:
        """The step's Job was created: add it. Returns the batch to send now, if any: closed, to POST; still
        open, to linger (:meth:`linger_left`, then :meth:`close`)."""
        with self._lock:
            batch.joined -= 1
            batch.members.append(Member(sub, reference(job), secret))
            batch.size += _size(secret)
            self._of[job["metadata"]["name"]] = batch
            batch.last = self._clock()
            if batch.closed:
                return self._ready(batch)
            if len(batch.members) >= self.max_members or batch.size >= self.max_bytes:
                self._close(batch)
            elif batch.key not in self._busy and not batch.lingering:
                if self.quiet <= 0:
                    self._close(batch)
                else:
                    batch.lingering = True
                    batch.first = batch.last
                    return batch
            return self._ready(batch)

    def linger_left(self, batch: Batch) -> float:
        """Seconds the lingering batch still waits for more steps; 0 once it is to close."""
        with self._lock:
            now = self._clock()
            if batch.closed or now >= batch.first + self.max_linger:
                return 0.0
            if batch.joined:  # someone is mid-POST: look again after a quiet spell
                return min(self.quiet, batch.first + self.max_linger - now)
            return max(0.0, min(batch.last + self.quiet, batch.first + self.max_linger) - now)

    def close(self, batch: Batch) -> Optional[Batch]:
        """End the batch's linger; the batch to POST now, if any (else the last of those who joined hands
        it out)."""
        with self._lock:
            if not batch.closed:
                self._close(batch)
            return self._ready(batch)

    def withdraw(self, batch: Batch) -> Optional[Batch]:
        """The step's Job was not created; the batch to POST now, if any."""
        with self._lock:
            batch.joined -= 1
            if batch.closed and batch.joined == 0 and not batch.members:  # everyone withdrew
                self._busy.discard(batch.key)
                batch.done.set_result(None)
                return self._next(batch.key)
            return self._ready(batch)

    def sent(self, batch: Batch, created: bool) -> List[Batch]:
        """The batch's POST was answered. Returns what to do next: the key's next batch to POST (if
        ready), and this batch again if it is to be deleted (every member released meanwhile)."""
        with self._lock:
            batch.created = created
            for member in batch.members:
                member.secret = {}
            self._busy.discard(batch.key)
            out = [b for b in (self._next(batch.key),) if b is not None]
            if created and self._all_released(batch):
                batch.deleted = True
                out.append(batch)
        batch.done.set_result(None)
        return out

    def release(self, job: str) -> Optional[Batch]:
        """The step of Job ``job`` no longer needs its environment: the batch to delete now, if that
        was its last member to need it."""
        with self._lock:
            batch = self._of.pop(job, None)
            if batch is None:
                return None
            for member in batch.members:
                if member.job["metadata"]["name"] == job:
                    member.released = True
            if batch.created and not batch.deleted and self._all_released(batch):
                batch.deleted = True
                return batch
            return None

    # -------------------------------------------------------------- under the lock
    def _close(self, batch: Batch) -> None:
        batch.closed = True
        self._busy.add(batch.key)
        if self._open.get(batch.key) is batch:
            del self._open[batch.key]

    @staticmethod
    def _ready(batch: Batch) -> Optional[Batch]:
        """The batch, handed out for its POST once: closed, everyone who joined in, and someone in."""
        if batch.closed and batch.joined == 0 and batch.members and not batch.out:
            batch.out = True
            return batch
        return None

    def _next(self, key: Tuple[str, str]) -> Optional[Batch]:
        """Close the key's open batch if it has members (its POST goes when all joined have handed in)."""
        batch = self._open.get(key)
        if batch is None or not batch.members:
            return None
        self._close(batch)
        return self._ready(batch)

    def _all_released(self, batch: Batch) -> bool:
        return batch.closed and batch.joined == 0 and all(m.released for m in batch.members)

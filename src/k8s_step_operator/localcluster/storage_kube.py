"""Small, dict-based Kubernetes plumbing for the local storage controllers.

Everything here speaks plain JSON dicts over raw API paths, so core objects and
custom resources (VolumeSnapshots) are handled the same way: ``Kube`` for
requests, ``Informer`` for list+watch caches, ``WorkQueue`` for de-duplicated,
rate-limited keys, ``EventRecorder`` for core/v1 Events and ``PathLocks`` so a
copy and a delete never touch the same directory at once.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

from kubernetes import config
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from ..kube import rest

log = logging.getLogger("k8s_step_operator.localcluster.storage")

Obj = dict[str, Any]
Handler = Callable[[str, Obj], None]


# --------------------------------------------------------------------- helpers
def now_rfc3339() -> str:
    """The current UTC time with one-second precision, as Kubernetes writes it."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def quantity_bytes(value: str | int | float | None) -> int:
    """A Kubernetes quantity ("1Gi", "500M", 1024) as whole bytes, rounded up; None/"" → 0."""
    if value is None or value == "":
        return 0
    amount = Decimal(parse_quantity(value))
    whole = int(amount)
    return whole + 1 if amount > whole else whole


def meta(obj: Obj) -> Obj:
    """``obj.metadata`` (never None)."""
    return obj.get("metadata") or {}


def obj_key(obj: Obj) -> str:
    """``namespace/name`` for namespaced objects, ``name`` for cluster-scoped ones."""
    m = meta(obj)
    return f"{m['namespace']}/{m['name']}" if m.get("namespace") else m["name"]


def split_key(key: str) -> tuple[str | None, str]:
    """Inverse of ``obj_key``."""
    if "/" in key:
        ns, name = key.split("/", 1)
        return ns, name
    return None, key


def annotations(obj: Obj) -> dict[str, str]:
    """``metadata.annotations`` (never None)."""
    return meta(obj).get("annotations") or {}


def api_message(exc: BaseException) -> str:
    """A short description of an API error: status code and the server's message."""
    if isinstance(exc, ApiException):
        try:
            message = json.loads(exc.body or "{}").get("message")
        except (TypeError, ValueError):
            message = None
        return f"({exc.status}) {message or exc.reason}"
    return str(exc)


def copy_tree_atomic(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` (which must not exist) through a temporary sibling and a rename.

    Symlinks are copied as symlinks, so the copy is a faithful image of the tree and a
    crash never leaves a half-filled ``target`` behind.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(source, tmp, symlinks=True)
        tmp.chmod(0o777)
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_tree(path: Path) -> None:
    """Delete a directory tree; a missing one is fine."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def is_within(path: Path, root: Path) -> bool:
    """Whether ``path`` lies strictly inside ``root`` (after resolving ``..``)."""
    try:
        rel = Path(os.path.normpath(path)).relative_to(os.path.normpath(root))
    except ValueError:
        return False
    return str(rel) not in ("", ".")


# ------------------------------------------------------------------------ kube
class Kube:
    """JSON requests against the API server on raw paths, with the admin kubeconfig."""

    def __init__(self, kubeconfig: str) -> None:
        self.api = config.new_client_from_config(config_file=kubeconfig)

    def request(
        self, method: str, path: str, body: Any = None, content_type: str | None = None, timeout: float = 15.0
    ) -> Obj:
        """One request; the decoded JSON body. Raises ApiException on a non-2xx status."""
        return rest.request(self.api, method, path, body=body, content_type=content_type, timeout=timeout) or {}

    def get(self, path: str) -> Obj:
        return self.request("GET", path)

    def get_or_none(self, path: str) -> Obj | None:
        """GET, or None when the object does not exist."""
        try:
            return self.get(path)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, path: str, body: Obj) -> Obj:
        return self.request("POST", path, body)

    def replace(self, path: str, body: Obj) -> Obj:
        return self.request("PUT", path, body)

    def merge_patch(self, path: str, patch: Obj) -> Obj:
        return self.request("PATCH", path, patch, content_type="application/merge-patch+json")

    def json_patch(self, path: str, ops: list[Obj]) -> Obj:
        return self.request("PATCH", path, ops, content_type="application/json-patch+json")

    def delete(self, path: str, missing_ok: bool = True) -> None:
        """DELETE; a 404 is fine unless ``missing_ok`` is False."""
        try:
            self.request("DELETE", path)
        except ApiException as exc:
            if not (missing_ok and exc.status == 404):
                raise

    def watch(self, path: str, resource_version: str, timeout_seconds: int = 50) -> Iterator[tuple[str, Obj]]:
        """Yield (type, object) watch events until the server ends the stream; ``rest.Gone`` on 410."""
        return rest.watch(self.api, path, resource_version, server_timeout=timeout_seconds)


# -------------------------------------------------------------------- informer
class Informer:
    """A list+watch cache of one resource path that calls handlers on every change.

    The watch resumes from the last seen resourceVersion after a disconnect and
    relists on 410 Gone; objects that vanished during a relist are reported as DELETED.
    """

    def __init__(self, kube: Kube, path: str, stop: threading.Event, name: str | None = None) -> None:
        self.kube = kube
        self.path = path
        self.stop = stop
        self.name = name or path
        self.synced = threading.Event()
        self._cache: dict[str, Obj] = {}
        self._lock = threading.Lock()
        self._handlers: list[Handler] = []
        self._thread: threading.Thread | None = None

    def add_handler(self, handler: Handler) -> None:
        """``handler(event_type, obj)`` for ADDED, MODIFIED and DELETED."""
        self._handlers.append(handler)

    def get(self, key: str) -> Obj | None:
        with self._lock:
            return self._cache.get(key)

    def items(self) -> list[Obj]:
        with self._lock:
            return list(self._cache.values())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"informer:{self.name}", daemon=True)
        self._thread.start()

    def _notify(self, event_type: str, obj: Obj) -> None:
        for handler in self._handlers:
            try:
                handler(event_type, obj)
            except Exception:  # noqa: BLE001 - one handler's bug never stops the informer
                log.exception("handler failed for %s %s", self.name, obj_key(obj))

    def _relist(self) -> str:
        listing = self.kube.get(self.path)
        items = listing.get("items") or []
        kind = str(listing.get("kind") or "")
        for item in items:  # list items carry no apiVersion/kind; events about them need both
            item.setdefault("apiVersion", listing.get("apiVersion"))
            item.setdefault("kind", kind[: -len("List")] if kind.endswith("List") else kind)
        fresh = {obj_key(item): item for item in items}
        with self._lock:
            old = self._cache
            self._cache = dict(fresh)
        for key, obj in old.items():
            if key not in fresh:
                self._notify("DELETED", obj)
        for key, obj in fresh.items():
            previous = old.get(key)
            if previous is None:
                self._notify("ADDED", obj)
            elif meta(previous).get("resourceVersion") != meta(obj).get("resourceVersion"):
                self._notify("MODIFIED", obj)
        self.synced.set()
        return str(meta(listing).get("resourceVersion", ""))

    def _apply(self, kind: str, obj: Obj) -> str | None:
        rv = meta(obj).get("resourceVersion")
        if kind == "BOOKMARK":
            return rv
        key = obj_key(obj)
        with self._lock:
            if kind == "DELETED":
                self._cache.pop(key, None)
            else:
                self._cache[key] = obj
        self._notify(str(kind), obj)
        return rv

    def _run(self) -> None:
        rv: str | None = None
        backoff = 0.2
        while not self.stop.is_set():
            try:
                if rv is None:
                    rv = self._relist()
                for kind, obj in self.kube.watch(self.path, rv):
                    if self.stop.is_set():
                        return
                    rv = self._apply(kind, obj) or rv
                backoff = 0.2
            except rest.Gone as exc:
                log.info("%s: %s; relisting", self.name, exc)
                rv = None
            except Exception as exc:  # noqa: BLE001 - retried with back-off
                log.warning("%s: watch failed (%s); retrying in %.1fs", self.name, api_message(exc), backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)


# ------------------------------------------------------------------ work queue
class WorkQueue:
    """De-duplicating work queue with delayed adds and per-key exponential back-off.

    A key is never handed to two workers at once; a key added while it is being
    processed is processed again afterwards.
    """

    def __init__(self, base_delay: float = 0.25, max_delay: float = 10.0) -> None:
        self._cond = threading.Condition()
        self._ready: list[str] = []
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._dirty: set[str] = set()
        self._delayed: list[tuple[float, int, str]] = []
        self._seq = 0
        self._failures: dict[str, int] = {}
        self.base_delay = base_delay
        self.max_delay = max_delay

    def add(self, key: str) -> None:
        with self._cond:
            if key in self._active:
                self._dirty.add(key)
            elif key not in self._queued:
                self._queued.add(key)
                self._ready.append(key)
                self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            self._seq += 1
            heapq.heappush(self._delayed, (time.monotonic() + delay, self._seq, key))
            self._cond.notify()

    def retry(self, key: str) -> float:
        """Re-add ``key`` after its next back-off delay; returns the delay."""
        with self._cond:
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
        delay = min(self.base_delay * (2**n), self.max_delay)
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        """Reset ``key``'s back-off after a success."""
        with self._cond:
            self._failures.pop(key, None)

    def _promote(self) -> float | None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            if key in self._active:
                self._dirty.add(key)
            elif key not in self._queued:
                self._queued.add(key)
                self._ready.append(key)
        return self._delayed[0][0] - now if self._delayed else None

    def get(self, timeout: float) -> str | None:
        """The next key to process, or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                wait_for = self._promote()
                if self._ready:
                    key = self._ready.pop(0)
                    self._queued.discard(key)
                    self._active.add(key)
                    return key
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, wait_for) if wait_for is not None else left)

    def done(self, key: str) -> None:
        with self._cond:
            self._active.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                if key not in self._queued:
                    self._queued.add(key)
                    self._ready.append(key)
                    self._cond.notify()

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._delayed)


class Requeue(Exception):
    """Raised by a sync function: not an error, try this key again after ``delay`` seconds."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


def run_workers(
    name: str,
    queue: WorkQueue,
    sync: Callable[[str], None],
    stop: threading.Event,
    workers: int = 2,
) -> list[threading.Thread]:
    """Start ``workers`` threads that call ``sync(key)``; failures are retried with back-off."""

    def loop() -> None:
        while not stop.is_set():
            key = queue.get(timeout=0.5)
            if key is None:
                continue
            try:
                sync(key)
                queue.forget(key)
            except Requeue as again:
                if again.delay is None:
                    queue.retry(key)
                else:
                    queue.add_after(key, again.delay)
                log.debug("%s %s: %s", name, key, again)
            except ApiException as exc:
                if exc.status == 404:
                    log.debug("%s %s: object gone (%s)", name, key, api_message(exc))
                    queue.forget(key)
                    continue
                delay = queue.retry(key)
                level = logging.DEBUG if exc.status == 409 else logging.WARNING
                log.log(level, "%s %s failed: %s (retry in %.1fs)", name, key, api_message(exc), delay)
            except Exception as exc:  # noqa: BLE001 - one object's failure never stops the controller
                delay = queue.retry(key)
                log.warning("%s %s failed: %s (retry in %.1fs)", name, key, exc, delay, exc_info=True)
            finally:
                queue.done(key)

    threads = [threading.Thread(target=loop, name=f"{name}-{i}", daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    return threads


# ---------------------------------------------------------------------- events
class EventRecorder:
    """Writes core/v1 Events; a repeat of the same event bumps its count instead of adding one."""

    def __init__(self, kube: Kube, component: str) -> None:
        self.kube = kube
        self.component = component
        self.instance = f"{component}-{socket.gethostname()}"
        self._seen: dict[tuple[str, str, str, str], tuple[str, str, int]] = {}
        self._lock = threading.Lock()

    def event(self, obj: Obj, event_type: str, reason: str, message: str) -> None:
        """Record an event about ``obj`` (Normal or Warning); failures are logged, never raised."""
        m = meta(obj)
        namespace = m.get("namespace") or "default"
        ident = (m.get("uid", ""), event_type, reason, message)
        stamp = now_rfc3339()
        log.info("event %s %s %s: %s", event_type, reason, obj_key(obj), message)
        try:
            with self._lock:
                seen = self._seen.get(ident)
            if seen is not None:
                name, ns, count = seen
                try:
                    self.kube.merge_patch(
                        f"/api/v1/namespaces/{ns}/events/{name}", {"count": count + 1, "lastTimestamp": stamp}
                    )
                    with self._lock:
                        self._seen[ident] = (name, ns, count + 1)
                    return
                except ApiException as exc:
                    if exc.status != 404:
                        raise
            body = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{m.get('name', 'object')}.", "namespace": namespace},
                "involvedObject": {
                    "apiVersion": obj.get("apiVersion"),
                    "kind": obj.get("kind"),
                    "name": m.get("name"),
                    "namespace": m.get("namespace"),
                    "uid": m.get("uid"),
                    "resourceVersion": m.get("resourceVersion"),
                },
                "reason": reason,
                "message": message,
                "type": event_type,
                "source": {"component": self.component},
                "reportingComponent": self.component,
                "reportingInstance": self.instance,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            }
            created = self.kube.create(f"/api/v1/namespaces/{namespace}/events", body)
            with self._lock:
                if len(self._seen) > 5000:
                    self._seen.clear()
                self._seen[ident] = (meta(created)["name"], namespace, 1)
        except Exception as exc:  # noqa: BLE001 - events are best effort
            log.warning("could not record event %s on %s: %s", reason, obj_key(obj), api_message(exc))


# ---------------------------------------------------------------------- locks
class PathLocks:
    """One lock per directory, so a copy out of a volume and its deletion never overlap."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, *paths: Path) -> Iterator[None]:
        """Hold the locks of ``paths`` (taken in sorted order, so two holders never deadlock)."""
        names = sorted({os.path.normpath(p) for p in paths})
        with self._guard:
            locks = [self._locks.setdefault(name, threading.Lock()) for name in names]
        for lock in locks:
            lock.acquire()
        try:
            yield
        finally:
            for lock in reversed(locks):
                lock.release()

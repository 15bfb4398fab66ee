"""One shared watch of pods and events per API server and namespace, for every in-flight step of this process.

Two reflectors (``reflector.Reflector``: list, then watch from the list's resourceVersion; a
disconnect resumes from the last one seen, 410 Gone relists, errors back off for ever) feed one
cache: the managed pods (by label), and the namespace's Warning events about Pods and Jobs — the
reasons Kubernetes gives (FailedScheduling, FailedMount, BackOff, ...). Events are optional: if
they cannot be watched (no permission), steps are judged from their pods alone. Their reflector
starts only once a caller asks for them (:meth:`PodWatch.want_events`: a step slow to start, or
failed): pods that start as they should need no events, and its LIST then still finds every
warning the namespace kept (an hour's, by default).

The cache can be indexed by one pod label, the owner key (the operator: the Job controller's
``batch.kubernetes.io/job-name``; an event's key is its Job's name, or its pod's label): a change
wakes only the waiters of that key, and a waiter reads only its key's pods and events, so N steps
in flight cost O(N) per change, not O(N²).
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

from kubernetes import client

from .connection import server_of
from .errors import Forbidden
from .reflector import Reflector

T = TypeVar("T")
log = logging.getLogger(__name__)

MANAGED_SELECTOR = "app.kubernetes.io/managed-by=k8s-step-operator"
EVENT_KINDS = ("Pod", "Job")
MAX_EVENTS = 4096  # events kept per namespace, oldest dropped first
WARNINGS = "type=Warning"  # the events watched: the judge and the user are told only of warnings
POD_SPEC_KEPT = ("nodeName",)  # what is kept of a cached pod's spec, besides its containers' CONTAINER_KEPT
CONTAINER_KEPT = ("name", "image", "restartPolicy")
META_DROPPED = ("managedFields", "annotations")  # a cached pod's: its Job holds the step's annotations
STATUS_DROPPED = ("hostIP", "hostIPs", "podIP", "podIPs", "qosClass")  # nothing judges a step by them
CONTAINER_STATUS_DROPPED = ("imageID", "containerID", "allocatedResources", "resources", "volumeMounts", "user")
MAX_GONE = 4096  # deleted pods remembered per namespace (a step forgets its own at clean-up)
MAX_FORGOTTEN = 4096  # uids of forgotten pods whose later events are ignored (until their DELETED)


class PodWatch:
    """A cache of the managed pods (and of the events about Pods and Jobs) in one namespace."""

    _registry: dict[tuple[str, str], "PodWatch"] = {}
    _registry_lock = threading.Lock()

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        selector: str = MANAGED_SELECTOR,
        client_of: Callable[[], client.ApiClient] | None = None,
        index_label: str | None = None,
    ) -> None:
        self.api = api
        self.index_label = index_label
        self.client_of = client_of
        self.namespace = namespace
        self.selector = selector
        self.path = f"/api/v1/namespaces/{namespace}/pods"
        self._pods: dict[str, dict] = {}
        self._gone: OrderedDict[str, dict] = OrderedDict()
        self._forgotten: OrderedDict[str, None] = OrderedDict()  # uids of pods whose step has been cleaned up
        self._events: OrderedDict[str, dict] = OrderedDict()
        self._pods_of: dict[str, set[str]] = {}  # Job -> names of its pods (present or gone)
        self._events_of: dict[tuple[str, str], set[str]] = {}  # (kind, name) -> uids of events about it
        self._seq: dict[str, int] = {}  # event uid -> when it was last kept (events come out oldest first)
        self._counter = 0
        self._waiters: dict[str, set[threading.Event | _Nudge]] = {}  # Job -> its waiters' wake-ups
        self._cond = threading.Condition()
        self._synced = False
        self._stop = threading.Event()
        self._pod_errors = ""
        self._pod_reflector = Reflector(
            self._client, self.path, {"labelSelector": selector}, self._replace, self._apply,
            on_error=self._pod_error, name=f"watch-pods-{namespace}",
        )
        self._event_reflector = Reflector(
            self._client, f"/api/v1/namespaces/{namespace}/events", {"fieldSelector": WARNINGS},
            self._replace_events, self._apply_event,
            name=f"watch-events-{namespace}",
        )
        self._events_wanted = False
        self._events_synced = False
        self._thread = self._pod_reflector
        self._pod_reflector.start()

    def want_events(self, synced_within: float = 0.0) -> bool:
        """Start watching the namespace's Warning events (once; later calls do nothing), and wait up to
        ``synced_within`` seconds for their first LIST. True when the events have been listed."""
        with self._cond:
            start = not self._events_wanted and not self._stop.is_set()
            self._events_wanted = True
        if start:
            self._event_reflector.start()
        if synced_within <= 0:
            return self._events_synced
        with self._cond:
            return self._cond.wait_for(lambda: self._events_synced or self._stop.is_set(), synced_within)

    @property
    def events_synced(self) -> bool:
        """Whether the events have been listed."""
        return self._events_synced

    @property
    def events_wanted(self) -> bool:
        """Whether the events' reflector has been started."""
        return self._events_wanted

    @classmethod
    def shared(
        cls, api: client.ApiClient, namespace: str, client_of: Callable[[], client.ApiClient] | None = None,
        index_label: str | None = None,
    ) -> "PodWatch":
        """The process-wide watch for ``namespace`` on ``api``'s server (started on first use).

        ``client_of``, if given, is asked for the client before every LIST and (re)opened watch.
        """
        key = (server_of(api), namespace)
        with cls._registry_lock:
            watch = cls._registry.get(key)
            if watch is None or not watch._thread.is_alive():
                watch = cls(api, namespace, client_of=client_of, index_label=index_label)
                cls._registry[key] = watch
            elif client_of is not None:
                watch.client_of = client_of
            return watch

    def _client(self) -> client.ApiClient:
        if self.client_of is not None:
            self.api = self.client_of()
        return self.api

    @classmethod
    def close_all(cls) -> None:
        """Stop every shared watch (tests, interpreter shutdown)."""
        with cls._registry_lock:
            for watch in cls._registry.values():
                watch.close()
            cls._registry.clear()

    def close(self) -> None:
        self._stop.set()
        self._pod_reflector.close()
        self._event_reflector.close()
        with self._cond:
            self._wake_all()

    # ---------------------------------------------------------- counters
    @property
    def watch_requests(self) -> int:
        return self._pod_reflector.watch_requests + self._event_reflector.watch_requests

    @property
    def list_requests(self) -> int:
        return self._pod_reflector.list_requests + self._event_reflector.list_requests

    @property
    def last_error(self) -> str:
        """Why the pod watch last dropped (empty if it never did)."""
        return self._pod_errors

    def _pod_error(self, exc: BaseException) -> None:
        denied = exc.rbac_text("list", "pods", self.namespace) if isinstance(exc, Forbidden) else None
        self._pod_errors = denied or f"{type(exc).__name__}: {exc}"

    # ---------------------------------------------------------- updates
    def _replace(self, items: list[dict]) -> None:
        with self._cond:
            fresh = {p["metadata"]["name"]: _slim_pod(p) for p in items if not self._is_forgotten(p)}
            for name, pod in self._pods.items():
                if name not in fresh:
                    self._remember_gone(name, pod)
            for name, pod in fresh.items():
                self._gone.pop(name, None)
                self._index(name, pod)
            self._pods = fresh
            self._synced = True
            self._wake_all()

    def _is_forgotten(self, pod: dict) -> bool:
        uid = _uid(pod)
        return bool(uid) and uid in self._forgotten

    def _remember_gone(self, name: str, pod: dict) -> None:
        self._gone[name] = pod
        self._gone.move_to_end(name)
        while len(self._gone) > MAX_GONE:
            old, dropped = self._gone.popitem(last=False)
            if old not in self._pods:
                self._unindex(old, dropped)

    def _apply(self, kind: str, obj: dict) -> None:
        obj = _slim_pod(obj)
        name = obj["metadata"]["name"]
        with self._cond:
            if self._is_forgotten(obj):  # its step is over: its updates and deletion are not kept
                if kind == "DELETED":
                    del self._forgotten[_uid(obj)]
                return
            if kind == "DELETED":
                self._pods.pop(name, None)
                self._remember_gone(name, obj)
            else:
                self._pods[name] = obj
                self._gone.pop(name, None)
            self._index(name, obj)
            self._wake(self._key_of(obj))

    def _index(self, name: str, pod: dict) -> None:
        job = self._key_of(pod)
        if job:
            self._pods_of.setdefault(job, set()).add(name)

    def _unindex(self, name: str, pod: dict) -> None:
        names = self._pods_of.get(self._key_of(pod) or "")
        if names is not None:
            names.discard(name)
            if not names:
                del self._pods_of[self._key_of(pod) or ""]

    def _replace_events(self, items: list[dict]) -> None:
        with self._cond:
            self._events.clear()
            self._events_of.clear()
            self._seq.clear()
            for event in items:
                self._keep_event(event)
            self._events_synced = True
            self._wake_all()

    def _apply_event(self, kind: str, event: dict) -> None:
        with self._cond:
            if kind != "DELETED":  # an expired event still explains what happened
                if self._keep_event(event):
                    involved = event.get("involvedObject") or {}
                    if involved.get("kind") == "Job":
                        self._wake(involved.get("name"))
                    else:
                        name = str(involved.get("name", ""))
                        pod = self._pods.get(name) or self._gone.get(name)
                        if pod is None:  # an event about a pod not seen yet: whose it is is unknown
                            self._wake_all()
                        else:
                            self._wake(self._key_of(pod))

    def _keep_event(self, event: dict) -> bool:
        involved = event.get("involvedObject") or {}
        if involved.get("kind") not in EVENT_KINDS:
            return False
        uid = (event.get("metadata") or {}).get("uid") or (event.get("metadata") or {}).get("name", "")
        self._events[uid] = _shared(_slim(event))
        self._events.move_to_end(uid)
        self._counter += 1
        self._seq[uid] = self._counter
        self._events_of.setdefault(_about(event), set()).add(uid)
        while len(self._events) > MAX_EVENTS:
            old, dropped = self._events.popitem(last=False)
            self._seq.pop(old, None)
            about = _about(dropped)
            uids = self._events_of.get(about)
            if uids is not None:
                uids.discard(old)
                if not uids:
                    del self._events_of[about]
        return True

    def _key_of(self, pod: dict) -> str | None:
        """A pod's index key (its ``index_label``), if the cache is indexed."""
        if self.index_label is None:
            return None
        return _label(pod, self.index_label)

    def _wake(self, job: str | None) -> None:
        """Wake the waiters of ``job`` (and whoever waits on the whole cache); caller holds the lock.
        An unindexed cache cannot tell whose a change is: it wakes every waiter."""
        if self.index_label is None:
            self._wake_all()
            return
        for event in self._waiters.get(job or "", ()):
            event.set()
        self._cond.notify_all()

    def poke(self, job: str) -> None:
        """Wake the waiters of ``job`` although nothing in the cache changed (its verdict did)."""
        with self._cond:
            self._wake(job)

    def _wake_all(self) -> None:
        for waiting in self._waiters.values():
            for event in waiting:
                event.set()
        self._cond.notify_all()

    # ------------------------------------------------------------- reads
    def select(self, label: str, value: str) -> list[tuple[dict, bool]]:
        """Every pod (present or gone) whose label ``label`` equals ``value``, as (pod, deleted)."""
        with self._cond:
            if label == self.index_label:  # from the index
                found = []
                for name in sorted(self._pods_of.get(value, ())):
                    if name in self._pods:
                        found.append((self._pods[name], False))
                    elif name in self._gone:
                        found.append((self._gone[name], True))
                return found
            return [
                (pod, deleted)
                for pods, deleted in ((self._pods, False), (self._gone, True))
                for pod in pods.values()
                if _label(pod, label) == value
            ]

    def events_about(self, objects: Iterable[tuple[str, str]]) -> list[dict]:
        """The cached events whose involved object is one of ``objects`` ((kind, name) pairs), oldest first."""
        with self._cond:
            uids = {uid for about in set(objects) for uid in self._events_of.get(about, ())}
            return [self._events[uid] for uid in sorted(uids, key=self._seq.__getitem__)]

    def forget(self, label: str, value: str) -> None:
        """Drop the pods whose ``label`` equals ``value`` (their step is done and cleaned up): those
        deleted, and those still there, whose later updates and deletion are then ignored (by uid: a
        new pod under the same label is seen as any other)."""
        with self._cond:
            # by the index when it is the index's label (once per step: a scan of every cached pod would make
            # a fan-out's clean-up quadratic), the label checked on the pod itself either way
            indexed = list(self._pods_of.get(value, ())) if label == self.index_label else None
            for pods in (self._gone, self._pods):
                names = indexed if indexed is not None else list(pods)
                for name in [n for n in names if n in pods and _label(pods[n], label) == value]:
                    pod = pods.pop(name)
                    if pods is self._pods and _uid(pod):
                        self._forgotten[_uid(pod)] = None
                        while len(self._forgotten) > MAX_FORGOTTEN:
                            self._forgotten.popitem(last=False)
                    if name not in self._pods and name not in self._gone:
                        self._unindex(name, pod)

    def wait_synced(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._synced or self._stop.is_set(), timeout)

    def wait_for(
        self,
        judge: Callable[[], T | None],
        timeout: float | None = None,
        tick: Callable[[], dt.datetime | None] | None = None,
        job: str | None = None,
    ) -> T | None:
        """Call ``judge()`` (it reads this cache) after every change until it returns non-None; with
        ``job``, only after a change to that Job's pods or events.

        ``tick`` may return the next moment the judge must run even without an
        event (e.g. a startup deadline). Returns None on ``timeout``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if job is None:
            with self._cond:  # re-entrant: judge() may call select()
                return self._judge_until(judge, deadline, tick, self._cond.wait)
        woken = threading.Event()
        with self._waiting(job, woken):
            # clear before judging: a change from then on wakes the next round
            return self._judge_until(judge, deadline, tick, woken.wait, before=woken.clear)

    @contextmanager
    def nudging(self, job: str, nudge: Callable[[], None]) -> Iterator[None]:
        """While the block runs, call ``nudge()`` once at its start and after every change to ``job``'s
        pods or events: in the watch's thread, holding the cache's lock (so: short, reading the cache only).
        For a waiter busy with something else than waiting, e.g. reading its step's log."""
        with self._waiting(job, _Nudge(nudge), at_once=True):
            yield

    @contextmanager
    def _waiting(self, job: str, waiter: threading.Event | _Nudge, at_once: bool = False) -> Iterator[None]:
        """``waiter`` is woken (``set()``) on every change to ``job``'s pods or events while the block
        runs (``at_once``: also as it is registered, under the lock)."""
        with self._cond:
            self._waiters.setdefault(job, set()).add(waiter)
            if at_once:
                waiter.set()
        try:
            yield
        finally:
            with self._cond:
                waiting = self._waiters.get(job)
                if waiting is not None:
                    waiting.discard(waiter)
                    if not waiting:
                        del self._waiters[job]

    def _judge_until(
        self, judge: Callable[[], T | None], deadline: float | None, tick: Callable[[], dt.datetime | None] | None,
        sleep: Callable[[float | None], object], before: Callable[[], None] | None = None,
    ) -> T | None:
        """The waiting loop of :meth:`wait_for`: judge, then ``sleep`` until woken, the next ``tick`` or the
        deadline (None once it has passed, or when the watch is closed)."""
        while not self._stop.is_set():
            if before is not None:
                before()
            if self._synced:
                verdict = judge()
                if verdict is not None:
                    return verdict
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                return None
            if tick is not None:
                due = tick()
                if due is not None:
                    until = (due - dt.datetime.now(dt.timezone.utc)).total_seconds() + 0.05
                    wait = max(0.0, until) if wait is None else min(wait, max(0.0, until))
            sleep(wait)
        return None


class _Nudge:
    """A waiter that is a call: :meth:`PodWatch.nudging`'s, woken like the others (``set()``)."""

    def __init__(self, call: Callable[[], None]) -> None:
        self.call = call

    def set(self) -> None:
        try:
            self.call()
        except Exception:  # noqa: BLE001 - the watch goes on whatever a nudge does
            log.exception("a nudge failed")


def _slim(obj: dict) -> dict:
    """The object as cached: without ``metadata.managedFields`` (the server's field-ownership record,
    often the largest part of a pod; nothing here reads it)."""
    meta = obj.get("metadata")
    if meta:
        meta.pop("managedFields", None)
    return obj


def _slim_pod(pod: dict) -> dict:
    """The pod as cached: its metadata (as :func:`_slim`, and without annotations), its status (without
    addresses and the containers' ids and resources), and of its spec only what a step is judged by: the
    node, and each container's name, image and restart policy (a sidecar's).
    The rest of the spec (commands, environment references, volumes, tolerations) is most of a pod
    and nothing here reads it; with a step's pods cached as long as it is in flight, it counts.
    Its strings are :func:`_shared`."""
    pod = _slim(pod)
    meta = pod.get("metadata")
    if meta:
        for key in META_DROPPED:
            meta.pop(key, None)
    spec = pod.get("spec")
    if spec:
        kept = {key: spec[key] for key in POD_SPEC_KEPT if key in spec}
        for key in ("initContainers", "containers"):
            if key in spec:
                kept[key] = [{k: c[k] for k in CONTAINER_KEPT if k in c} for c in spec[key]]
        pod["spec"] = kept
    status = pod.get("status")
    if status:
        for key in STATUS_DROPPED:
            status.pop(key, None)
        for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
            for container in status.get(key) or ():
                for dropped in CONTAINER_STATUS_DROPPED:
                    container.pop(dropped, None)
    return _shared(pod)


def _shared(obj: T) -> T:
    """``obj`` (parsed JSON) with every string interned: the keys and the values most pods share ("status",
    "lastTransitionTime", "True", a node's name, a time) are then one object for all the cached pods
    instead of one per pod and version (each event is parsed on its own): a cached pod takes about half
    the memory (9.2 KiB → 4.3 KiB for a running step pod, measured with 100 of them)."""
    if isinstance(obj, str):
        return sys.intern(obj)  # type: ignore[return-value]
    if isinstance(obj, dict):
        return {sys.intern(key): _shared(value) for key, value in obj.items()}  # type: ignore[return-value]
    if isinstance(obj, list):
        return [_shared(value) for value in obj]  # type: ignore[return-value]
    return obj


def _uid(obj: dict) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _label(obj: dict, label: str) -> str | None:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(label)


def _about(event: dict) -> tuple[str, str]:
    """(kind, name) of the object an event is about."""
    involved = event.get("involvedObject") or {}
    return str(involved.get("kind", "")), str(involved.get("name", ""))

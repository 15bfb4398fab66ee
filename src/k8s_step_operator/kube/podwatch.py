"""One shared watch of pods and events per API server and namespace, for every in-flight step of this process.

Two reflectors (``reflector.Reflector``: list, then watch from the list's resourceVersion; a
disconnect resumes from the last one seen, 410 Gone relists, errors back off for ever) feed one
cache and wake every waiter on any change: the managed pods (by label), and the namespace's events about Pods and Jobs — the
reasons Kubernetes gives (FailedScheduling, FailedMount, BackOff, ...). Events are optional: if
they cannot be watched (no permission), steps are judged from their pods alone.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from typing import Callable, Iterable, TypeVar

from kubernetes import client

from .connection import server_of
from .errors import Forbidden
from .reflector import Reflector

T = TypeVar("T")

MANAGED_SELECTOR = "app.kubernetes.io/managed-by=k8s-step-operator"
EVENT_KINDS = ("Pod", "Job")
MAX_EVENTS = 4096  # events kept per namespace, oldest dropped first
MAX_GONE = 4096  # deleted pods remembered per namespace (a step forgets its own at clean-up)


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
    ) -> None:
        self.api = api
        self.client_of = client_of
        self.namespace = namespace
        self.selector = selector
        self.path = f"/api/v1/namespaces/{namespace}/pods"
        self._pods: dict[str, dict] = {}
        self._gone: OrderedDict[str, dict] = OrderedDict()
        self._events: OrderedDict[str, dict] = OrderedDict()
        self._cond = threading.Condition()
        self._synced = False
        self._stop = threading.Event()
        self._pod_errors = ""
        self._pod_reflector = Reflector(
            self._client, self.path, {"labelSelector": selector}, self._replace, self._apply,
            on_error=self._pod_error, name=f"watch-pods-{namespace}",
        )
        self._event_reflector = Reflector(
            self._client, f"/api/v1/namespaces/{namespace}/events", {}, self._replace_events, self._apply_event,
            name=f"watch-events-{namespace}",
        )
        self._thread = self._pod_reflector
        self._pod_reflector.start()
        self._event_reflector.start()

    @classmethod
    def shared(
        cls, api: client.ApiClient, namespace: str, client_of: Callable[[], client.ApiClient] | None = None
    ) -> "PodWatch":
        """The process-wide watch for ``namespace`` on ``api``'s server (started on first use).

        ``client_of``, if given, is asked for the client before every LIST and (re)opened watch.
        """
        key = (server_of(api), namespace)
        with cls._registry_lock:
            watch = cls._registry.get(key)
            if watch is None or not watch._thread.is_alive():
                watch = cls(api, namespace, client_of=client_of)
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
            self._cond.notify_all()

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
            fresh = {p["metadata"]["name"]: p for p in items}
            for name, pod in self._pods.items():
                if name not in fresh:
                    self._remember_gone(name, pod)
            self._pods = fresh
            self._synced = True
            self._cond.notify_all()

    def _remember_gone(self, name: str, pod: dict) -> None:
        self._gone[name] = pod
        self._gone.move_to_end(name)
        while len(self._gone) > MAX_GONE:
            self._gone.popitem(last=False)

    def _apply(self, kind: str, obj: dict) -> None:
        name = obj["metadata"]["name"]
        with self._cond:
            if kind == "DELETED":
                self._pods.pop(name, None)
                self._remember_gone(name, obj)
            else:
                self._pods[name] = obj
                self._gone.pop(name, None)
            self._cond.notify_all()

    def _replace_events(self, items: list[dict]) -> None:
        with self._cond:
            self._events.clear()
            for event in items:
                self._keep_event(event)
            self._cond.notify_all()

    def _apply_event(self, kind: str, event: dict) -> None:
        with self._cond:
            if kind != "DELETED":  # an expired event still explains what happened
                self._keep_event(event)
                self._cond.notify_all()

    def _keep_event(self, event: dict) -> None:
        if (event.get("involvedObject") or {}).get("kind") not in EVENT_KINDS:
            return
        uid = (event.get("metadata") or {}).get("uid") or (event.get("metadata") or {}).get("name", "")
        self._events[uid] = event
        self._events.move_to_end(uid)
        while len(self._events) > MAX_EVENTS:
            self._events.popitem(last=False)

    # ------------------------------------------------------------- reads
    def select(self, label: str, value: str) -> list[tuple[dict, bool]]:
        """Every pod (present or gone) whose label ``label`` equals ``value``, as (pod, deleted)."""
        with self._cond:
            return [
                (pod, deleted)
                for pods, deleted in ((self._pods, False), (self._gone, True))
                for pod in pods.values()
                if ((pod.get("metadata") or {}).get("labels") or {}).get(label) == value
            ]

    def events_about(self, objects: Iterable[tuple[str, str]]) -> list[dict]:
        """The cached events whose involved object is one of ``objects`` ((kind, name) pairs), oldest first."""
        wanted = set(objects)
        with self._cond:
            return [
                e for e in self._events.values()
                if ((e.get("involvedObject") or {}).get("kind"), (e.get("involvedObject") or {}).get("name")) in wanted
            ]

    def forget(self, label: str, value: str) -> None:
        """Drop the deleted pods whose ``label`` equals ``value`` (their step is done)."""
        with self._cond:
            for name in [n for n, p in self._gone.items() if ((p.get("metadata") or {}).get("labels") or {}).get(label) == value]:
                del self._gone[name]

    def wait_synced(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._synced or self._stop.is_set(), timeout)

    def wait_for(
        self,
        judge: Callable[[], T | None],
        timeout: float | None = None,
        tick: Callable[[], dt.datetime | None] | None = None,
    ) -> T | None:
        """Call ``judge()`` (it reads this cache) after every change until it returns non-None.

        ``tick`` may return the next moment the judge must run even without an
        event (e.g. a startup deadline). Returns None on ``timeout``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:  # re-entrant: judge() may call select()
            while not self._stop.is_set():
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
                self._cond.wait(wait)
        return None

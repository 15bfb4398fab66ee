"""One shared pod watch per API server and namespace, for every in-flight step of this process.

The watch keeps the latest version of each managed pod in memory and wakes
waiters on every event, so completion is noticed as soon as the node reports
it. Disconnects resume from the last resourceVersion; 410 Gone relists.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Callable, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from . import rest
from .connection import server_of
from .errors import forbidden_text

log = logging.getLogger(__name__)
T = TypeVar("T")

MANAGED_SELECTOR = "app.kubernetes.io/managed-by=k8s-step-operator"


class PodWatch:
    """A cache of the managed pods in one namespace, fed by a single watch."""

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
        self._gone: dict[str, dict] = {}
        self._cond = threading.Condition()
        self._synced = False
        self._stop = threading.Event()
        self.watch_requests = 0
        self.list_requests = 0
        self.last_error: str = ""
        self._thread = threading.Thread(target=self._run, name=f"podwatch-{namespace}", daemon=True)
        self._thread.start()

    @classmethod
    def shared(
        cls, api: client.ApiClient, namespace: str, client_of: Callable[[], client.ApiClient] | None = None
    ) -> "PodWatch":
        """The process-wide watch for ``namespace`` on ``api``'s server (started on first use).

        ``client_of``, if given, is asked for the client before every LIST and (re)opened watch, so
        that credentials that expire and are renewed (a service connector's) are not held for ever.
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

    @classmethod
    def close_all(cls) -> None:
        """Stop every shared watch (tests, interpreter shutdown)."""
        with cls._registry_lock:
            for watch in cls._registry.values():
                watch.close()
            cls._registry.clear()

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        resource_version: str | None = None
        backoff = 0.1
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._relist()
                self.watch_requests += 1
                for kind, obj in rest.watch(
                    self._client(), self.path, resource_version, {"labelSelector": self.selector}
                ):
                    if self._stop.is_set():
                        return
                    resource_version = (obj.get("metadata") or {}).get("resourceVersion") or resource_version
                    if kind != "BOOKMARK":
                        self._apply(kind, obj)
                backoff = 0.1
            except rest.Gone:
                log.debug("pod watch in %s expired (410); relisting", self.namespace)
                resource_version = None
            except Exception as exc:  # noqa: BLE001 - any transport error: back off and resume
                denied = forbidden_text(exc, "list", "pods", self.namespace) if isinstance(exc, ApiException) else None
                self.last_error = denied or f"{type(exc).__name__}: {exc}"
                log.debug("pod watch in %s dropped: %s", self.namespace, self.last_error)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _client(self) -> client.ApiClient:
        if self.client_of is not None:
            self.api = self.client_of()
        return self.api

    def _relist(self) -> str:
        self.list_requests += 1
        items, resource_version = rest.list_objects(self._client(), self.path, {"labelSelector": self.selector})
        with self._cond:
            fresh = {p["metadata"]["name"]: p for p in items}
            for name, pod in self._pods.items():
                if name not in fresh:
                    self._gone[name] = pod
            self._pods = fresh
            self._synced = True
            self._cond.notify_all()
        return resource_version

    def _apply(self, kind: str, obj: dict) -> None:
        name = obj["metadata"]["name"]
        with self._cond:
            if kind == "DELETED":
                self._pods.pop(name, None)
                self._gone[name] = obj
            else:
                self._pods[name] = obj
                self._gone.pop(name, None)
            self._cond.notify_all()

    # ----------------------------------------------------------------- reads
    def select(self, label: str, value: str) -> list[tuple[dict, bool]]:
        """Every pod (present or gone) whose label ``label`` equals ``value``, as (pod, deleted)."""
        with self._cond:
            return [
                (pod, deleted)
                for pods, deleted in ((self._pods, False), (self._gone, True))
                for pod in pods.values()
                if ((pod.get("metadata") or {}).get("labels") or {}).get(label) == value
            ]

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

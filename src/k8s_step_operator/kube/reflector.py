"""The one list+watch loop: list a collection, watch it from the list's resourceVersion, resume.

A disconnect resumes from the last resourceVersion seen (bookmarks included); HTTP 410 Gone
relists; any other error goes to the caller's policy (``errors``), which says how long to back off,
or that the loop must end. The shared pod and event watch of the operator and the resource steps'
waits on one object both run on it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from kubernetes import client

from . import rest, retry
from .client import Client
from .errors import Gone

log = logging.getLogger(__name__)

# (the error, how many failed in a row) -> seconds to back off, or None: stop (the error is final)
ErrorPolicy = Callable[[BaseException, int], "float | None"]


def forever(exc: BaseException, failures: int) -> float | None:
    """Back off (0.1 s doubling up to 5 s) and go on, whatever the error: a watch that must not end."""
    return min(0.1 * 2 ** (failures - 1), 5.0)


def bounded(max_failures: int) -> ErrorPolicy:
    """Back off like the retry policy; end on a non-retryable API error or after ``max_failures`` in a row."""

    def policy(exc: BaseException, failures: int) -> float | None:
        if failures > max_failures or (isinstance(exc, client.ApiException) and not retry.is_retryable(exc)):
            return None
        hint = retry.retry_after_seconds(exc) if isinstance(exc, client.ApiException) else None
        return retry.DEFAULT.delay(failures, hint)

    return policy


class Reflector(threading.Thread):
    """List + watch of one collection into ``on_list(items)`` and ``on_event(type, object)``.

    ``api`` is asked for the client before every LIST and (re)opened watch, so that renewed
    credentials (a service connector's) reach it. ``start_rv`` skips the first LIST. When the
    policy ends the loop, ``on_fatal(error)`` is called. ``close()`` also shuts an open watch down.
    """

    def __init__(
        self,
        api: Callable[[], client.ApiClient],
        path: str,
        query: dict[str, str],
        on_list: Callable[[list[dict[str, Any]]], None],
        on_event: Callable[[str, dict[str, Any]], None],
        errors: ErrorPolicy = forever,
        on_fatal: Callable[[BaseException], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        name: str = "",
        start_rv: str | None = None,
        server_timeout: int = 60,
    ) -> None:
        super().__init__(name=name or f"reflector{path}", daemon=True)
        self.api, self.path, self.query = api, path, query
        self.on_list, self.on_event = on_list, on_event
        self.errors, self.on_fatal, self.on_error = errors, on_fatal, on_error
        self.resource_version = start_rv
        self.server_timeout = server_timeout
        self.list_requests = 0
        self.watch_requests = 0
        self._stop_event = threading.Event()
        self._resp: Any = None
        self._lock = threading.Lock()

    @property
    def stopped(self) -> bool:
        return self._stop_event.is_set()

    def close(self) -> None:
        """Stop the loop and shut its open watch connection down."""
        self._stop_event.set()
        with self._lock:
            resp = self._resp
        if resp is not None:
            try:
                resp.shutdown()
            except Exception:  # noqa: BLE001 - best effort
                pass

    def _relist(self) -> None:
        self.list_requests += 1
        items, self.resource_version = Client(self.api(), policy=None).list(self.path, self.query)
        self.on_list(items)

    def _watch_once(self) -> None:
        assert self.resource_version is not None
        self.watch_requests += 1
        resp = Client(self.api(), policy=None).open_watch(
            self.path, self.resource_version, self.query, self.server_timeout
        )
        with self._lock:
            self._resp = resp
        if self._stop_event.is_set():
            resp.shutdown()
        try:
            for kind, obj in rest.watch_events(resp):
                if self._stop_event.is_set():
                    return
                self.resource_version = (obj.get("metadata") or {}).get("resourceVersion") or self.resource_version
                if kind != "BOOKMARK":
                    self.on_event(kind, obj)
        finally:
            with self._lock:
                self._resp = None

    def run(self) -> None:
        failures = 0
        while not self._stop_event.is_set():
            try:
                if self.resource_version is None:
                    self._relist()
                self._watch_once()
                failures = 0
            except Gone:
                log.debug("watch of %s expired (410); relisting", self.path)
                self.resource_version = None
            except Exception as exc:  # noqa: BLE001 - the policy decides
                if self._stop_event.is_set():
                    return
                failures += 1
                if self.on_error is not None:
                    self.on_error(exc)
                pause = self.errors(exc, failures)
                if pause is None:
                    if self.on_fatal is not None:
                        self.on_fatal(exc)
                    return
                log.debug("watch of %s dropped (%s); resuming in %.1fs", self.path, exc, pause)
                self._stop_event.wait(pause)

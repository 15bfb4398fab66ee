"""Pod events (Pulling, Pulled, Created, Started, Killing, Failed, BackOff, Evicted, ...) sent in the background.

Like the kubelet's recorder, a repeated event (same pod, container, reason and
message) bumps ``count`` and ``lastTimestamp`` of the existing Event instead of
creating a new one. Sending never blocks a pod's lifecycle.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from .apiclient import MERGE, ApiClient, ApiError
from .timeutil import now_rfc3339

log = logging.getLogger(__name__)


class EventRecorder:
    """Queue of events for the pods of one node."""

    def __init__(self, api: ApiClient, node: str) -> None:
        self.api = api
        self.node = node
        self._queue: queue.Queue[tuple | None] = queue.Queue()
        self._seen: dict[tuple, tuple[str, int]] = {}
        self._thread = threading.Thread(target=self._loop, name="events", daemon=True)
        self._thread.start()

    def emit(self, pod: dict, type_: str, reason: str, message: str, container: str | None = None,
             init: bool = False) -> None:
        meta = pod["metadata"]
        field_path = f"spec.{'initContainers' if init else 'containers'}{{{container}}}" if container else None
        ref = {"apiVersion": "v1", "kind": "Pod", "namespace": meta["namespace"], "name": meta["name"],
               "uid": meta["uid"], "resourceVersion": meta.get("resourceVersion", "")}
        if field_path:
            ref["fieldPath"] = field_path
        self._queue.put((ref, type_, reason, message))

    def forget(self, uid: str) -> None:
        """Drop aggregation state of a pod that is gone."""
        self._queue.put(("forget", uid))

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if item[0] == "forget":
                self._seen = {k: v for k, v in self._seen.items() if k[0] != item[1]}
                continue
            try:
                self._send(*item)
            except Exception as exc:  # noqa: BLE001 - events are best effort
                log.debug("event %s for %s/%s not recorded: %s", item[2], item[0]["namespace"], item[0]["name"], exc)

    def _send(self, ref: dict, type_: str, reason: str, message: str) -> None:
        key = (ref["uid"], ref.get("fieldPath"), reason, message, type_)
        ns = ref["namespace"]
        now = now_rfc3339()
        seen = self._seen.get(key)
        if seen is not None:
            name, count = seen
            try:
                self.api.patch(f"/api/v1/namespaces/{ns}/events/{name}", {"count": count + 1, "lastTimestamp": now},
                               content_type=MERGE)
                self._seen[key] = (name, count + 1)
                return
            except ApiError as exc:
                if exc.status != 404:
                    raise
        name = f"{ref['name']}.{time.time_ns():x}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": "kubelet", "host": self.node},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": "kubelet",
            "reportingInstance": self.node,
        }
        self.api.post(f"/api/v1/namespaces/{ns}/events", body)
        self._seen[key] = (name, 1)

    def close(self) -> None:
        self._queue.put(None)

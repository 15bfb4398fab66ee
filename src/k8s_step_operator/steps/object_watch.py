"""Wait on one object with a WATCH (never a poll) and judge it with the step's conditions.

One thread watches the object (``fieldSelector=metadata.name=<name>`` on its
list path, resuming from the last resourceVersion and relisting on HTTP 410);
an optional second thread watches the object's Warning Events so that e.g. a
``ProvisioningFailed`` event ends the wait at once. Both feed a queue that the
caller's thread reads with the remaining time as its timeout, so the deadline
is exact. Watch connections are shut down when the wait ends.
"""

from __future__ import annotations

import logging
import queue
import time
from dataclasses import dataclass
from typing import Any, Callable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..kube.reflector import Reflector, bounded
from .conditions import Condition, ConditionError, Verdict, evaluate
from .errors import (
    ConditionFailed,
    ObjectDeleted,
    ResourceStepError,
    WaitTimeout,
    describe_status,
    translate_api_error,
)

__all__ = ["WaitTarget", "wait_for_conditions", "wait_until_deleted"]

log = logging.getLogger(__name__)

_MAX_WATCH_SECONDS = 300
_MAX_TRANSPORT_FAILURES = 8


@dataclass(frozen=True)
class WaitTarget:
    """The object to watch: its list path (namespace-scoped or cluster-wide) and name."""

    list_path: str
    name: str
    what: str  # e.g. "PersistentVolumeClaim ns/name", for messages
    resource: str = ""  # plural[.group], for permission errors
    namespace: str | None = None

    def watch_failed(self, exc: BaseException) -> ResourceStepError:
        """The error for a watch that cannot go on (403 names the missing permission)."""
        if isinstance(exc, ApiException):
            return translate_api_error(exc, "watch", self.resource or self.what, self.namespace, self.what)
        return ResourceStepError(f"watching {self.what} failed: {exc}")


def stream(
    api: client.ApiClient,
    tag: str,
    list_path: str,
    field_selector: str,
    out: "queue.Queue[tuple[str, str, Any]]",
    start_rv: str | None = None,
    label_selector: str | None = None,
) -> Reflector:
    """A reflector of one collection (field and label selector) putting (tag, type, payload) on ``out``.

    Types: ``LIST`` (payload: items), ``ADDED``/``MODIFIED``/``DELETED`` (payload: object),
    ``FATAL`` (payload: exception: not retryable, or too many failures in a row). ``start_rv``
    skips the first list.
    """
    query = {k: v for k, v in (("fieldSelector", field_selector), ("labelSelector", label_selector)) if v}
    return Reflector(
        lambda: api, list_path, query,
        on_list=lambda items: out.put((tag, "LIST", items)),
        on_event=lambda kind, obj: out.put((tag, kind, obj)),
        errors=bounded(_MAX_TRANSPORT_FAILURES),
        on_fatal=lambda exc: out.put((tag, "FATAL", exc)),
        name=f"k8s-step-watch-{tag}", start_rv=start_rv, server_timeout=_MAX_WATCH_SECONDS,
    )


def without_nulls(value: Any) -> Any:
    """Drop ``null`` map entries (the API server treats them as unset; CEL macros fail on them)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


class _NullTolerant:
    """A CEL condition evaluated on the object without its ``null`` fields.

    ``status.conditions: null`` (common right after creation) then reads as
    absent -- the condition is false -- instead of a type error.
    """

    def __init__(self, inner: Condition) -> None:
        self.inner = inner
        self.text = inner.text
        self.kind = inner.kind
        self.field = inner.field

    def matches(self, obj: Any) -> bool:
        return self.check(obj)[0]

    def check(self, obj: Any) -> tuple[bool, str]:
        return self.inner.check(without_nulls(obj))


def _tolerant(condition: Condition | None) -> Condition | None:
    if condition is None or condition.kind != "cel":
        return condition
    return _NullTolerant(condition)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _timeout_error(target: WaitTarget, timeout: float | None, reason: str, last: Any) -> WaitTimeout:
    return WaitTimeout(
        f"timed out after {timeout:g}s waiting for {target.what}: {reason}; last-seen {describe_status(last)}"
    )


def wait_for_conditions(
    api: client.ApiClient,
    target: WaitTarget,
    initial: dict[str, Any],
    success: Condition | None,
    failure: Condition | None,
    timeout: float | None,
    *,
    fail_on_events: tuple[str, ...] = (),
    events_path: str | None = None,
    on_progress: Callable[[dict[str, Any], str], None] | None = None,
) -> tuple[dict[str, Any], str]:
    """Watch ``target`` from ``initial`` until the conditions decide; returns (object, reason).

    Raises :class:`ConditionFailed` (failure condition or a Warning event whose
    reason is in ``fail_on_events``), :class:`ObjectDeleted`, or
    :class:`WaitTimeout` with the last-seen ``.status``.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    last = initial
    uid = (initial.get("metadata") or {}).get("uid")
    success, failure = _tolerant(success), _tolerant(failure)

    def judge(obj: dict[str, Any]) -> tuple[Verdict, str]:
        try:
            verdict, why = evaluate(obj, success, failure)
        except ConditionError as exc:
            raise ResourceStepError(f"{target.what}: {exc}") from None
        if verdict is Verdict.FAILED:
            raise ConditionFailed(f"{target.what}: {why}; {describe_status(obj)}", what=target.what, verdict=why)
        return verdict, why

    verdict, reason = judge(initial)
    if verdict is Verdict.SUCCEEDED:
        return initial, reason
    events: "queue.Queue[tuple[str, str, Any]]" = queue.Queue()
    streams = [
        stream(
            api,
            "object",
            target.list_path,
            f"metadata.name={target.name}",
            events,
            start_rv=(initial.get("metadata") or {}).get("resourceVersion"),
        )
    ]
    if fail_on_events and events_path and uid:
        streams.append(stream(api, "events", events_path, f"involvedObject.uid={uid},type=Warning", events))
    for one in streams:
        one.start()
    try:
        while True:
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0:
                raise _timeout_error(target, timeout, reason, last)
            try:
                tag, kind, payload = events.get(timeout=remaining)
            except queue.Empty:
                raise _timeout_error(target, timeout, reason, last) from None
            if kind == "FATAL":
                if tag == "events":
                    log.warning("cannot watch events of %s (%s); relying on conditions only", target.what, payload)
                    continue
                raise target.watch_failed(payload) from payload
            if tag == "events":
                for event in payload if kind == "LIST" else [payload]:
                    if kind != "DELETED" and event.get("reason") in fail_on_events:
                        warning = f"Warning event {event.get('reason')}: {event.get('message', '')}"
                        raise ConditionFailed(
                            f"{target.what}: {warning}", event_reason=event.get("reason"), what=target.what,
                            verdict=warning,
                        )
                continue
            if kind == "LIST":
                matching = [o for o in payload if (o.get("metadata") or {}).get("name") == target.name]
                if not matching:
                    raise ObjectDeleted(
                        f"{target.what} was deleted while waiting ({reason}); last-seen {describe_status(last)}"
                    )
                obj = matching[0]
            elif kind == "DELETED":
                raise ObjectDeleted(
                    f"{target.what} was deleted while waiting ({reason}); last-seen {describe_status(payload)}"
                )
            else:
                obj = payload
            if uid and (obj.get("metadata") or {}).get("uid") not in (None, uid):
                raise ObjectDeleted(
                    f"{target.what} was deleted and re-created while waiting ({reason}); last-seen {describe_status(last)}"
                )
            last = obj
            verdict, reason = judge(obj)
            if on_progress is not None:
                on_progress(obj, reason)
            if verdict is Verdict.SUCCEEDED:
                return obj, reason
            if (obj.get("metadata") or {}).get("deletionTimestamp"):
                raise ObjectDeleted(
                    f"{target.what} is being deleted while waiting ({reason}); last-seen {describe_status(obj)}"
                )
    finally:
        for one in streams:
            one.close()


def wait_until_deleted(
    api: client.ApiClient, target: WaitTarget, timeout: float | None, last: dict[str, Any] | None = None
) -> None:
    """Watch until ``target`` is gone (a DELETED event or absent on relist)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    events: "queue.Queue[tuple[str, str, Any]]" = queue.Queue()
    watch = stream(api, "object", target.list_path, f"metadata.name={target.name}", events)
    watch.start()
    try:
        while True:
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0:
                raise _timeout_error(target, timeout, "waiting for deletion", last)
            try:
                _tag, kind, payload = events.get(timeout=remaining)
            except queue.Empty:
                finalizers = ((last or {}).get("metadata") or {}).get("finalizers") or []
                why = (
                    f"still has finalizers {finalizers} (e.g. kubernetes.io/pvc-protection keeps a PVC while a pod "
                    "mounts it)"
                    if finalizers
                    else "waiting for deletion"
                )
                raise _timeout_error(target, timeout, why, last) from None
            if kind == "FATAL":
                raise target.watch_failed(payload) from payload
            if kind == "DELETED":
                return
            if kind == "LIST":
                matching = [o for o in payload if (o.get("metadata") or {}).get("name") == target.name]
                if not matching:
                    return
                last = matching[0]
            else:
                last = payload
    finally:
        watch.close()

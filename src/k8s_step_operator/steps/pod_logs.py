"""Stream the logs of the pods an object created by a resource step starts (a Job's, a Pod's).

One list+watch of the pods (a :class:`~k8s_step_operator.kube.reflector.Reflector`, selected by
:func:`started_pods.pod_query`) starts a :class:`~k8s_step_operator.kube.logs.LogFollower` for each
container once it has started; lines go to stdout with the prefixes of :func:`started_pods.log_label`, as the
step operator prints its steps' logs. It runs while the step waits on its conditions.
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any, Callable, Mapping, Optional

from kubernetes import client

from ..kube.logs import LogFollower
from ..kube.reflector import Reflector, bounded
from .started_pods import log_label, pod_query, started_containers

__all__ = ["PodLogs", "follow_started_pods"]

log = logging.getLogger(__name__)
JOIN_TIMEOUT = 5.0
MAX_FAILURES = 8  # watch failures in a row before the logs are given up (the step goes on)


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class PodLogs:
    """Follow every container of the selected pods until :meth:`close`."""

    def __init__(
        self, api: client.ApiClient, namespace: str, query: Mapping[str, str], step: str,
        emit: Callable[[str], None] = _stdout,
    ) -> None:
        self.api, self.namespace, self.step, self.emit = api, namespace, step, emit
        self.followers: dict[str, LogFollower] = {}
        self._first_pod: Optional[str] = None
        self._reflector = Reflector(
            lambda: api, f"/api/v1/namespaces/{namespace}/pods", dict(query),
            on_list=self._follow_all,
            on_event=lambda kind, pod: None if kind == "DELETED" else self._follow(pod),
            errors=bounded(MAX_FAILURES),
            on_fatal=lambda exc: log.warning("cannot follow the logs of %s's pods: %s", step, exc),
            name=f"k8s-step-logs-{step}",
        )

    def start(self) -> "PodLogs":
        self._reflector.start()
        return self

    def _follow_all(self, pods: list[dict[str, Any]]) -> None:
        for pod in pods:
            self._follow(pod)

    def _follow(self, pod: Mapping[str, Any]) -> None:
        name = (pod.get("metadata") or {}).get("name", "")
        for container in started_containers(pod):
            key = f"{name}/{container}"
            if key in self.followers:
                continue
            self._first_pod = self._first_pod or name
            prefix = f"[{log_label(self.step, pod, container, name == self._first_pod)}] "
            self.followers[key] = LogFollower(
                self.api, self.namespace, name, container, functools.partial(_prefixed, self.emit, prefix)
            ).start()

    def close(self, join: bool = True) -> None:
        """Stop watching; with ``join``, first let each follower print to its container's end (bounded)."""
        self._reflector.close()
        for follower in list(self.followers.values()):
            if join:
                follower.join(JOIN_TIMEOUT)
            follower.stop()


def follow_started_pods(api: client.ApiClient, obj: Mapping[str, Any], namespace: Optional[str], step: str) -> Optional[PodLogs]:
    """Start following the pods ``obj`` starts (None when it starts none)."""
    query = pod_query(obj)
    if query is None or not namespace:
        return None
    return PodLogs(api, namespace, query, step).start()


def _prefixed(emit: Callable[[str], None], prefix: str, line: str) -> None:
    emit(prefix + line)

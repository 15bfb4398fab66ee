"""Pure pod-status computation: container records → containerStatuses, phase and conditions.

The phase follows the kubelet's ``getPhase``; conditions follow its generators
(PodReadyToStartContainers, Initialized, ContainersReady, Ready).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import images
from .timeutil import rfc3339
from .envvars import HOST_IP, POD_IP


@dataclass
class ContainerRecord:
    """What the agent knows about one container of a pod."""

    name: str
    image: str
    init: bool = False
    sidecar: bool = False  # an init container with restartPolicy Always
    state: str = "waiting"  # waiting | running | terminated
    waiting_reason: str = "ContainerCreating"
    waiting_message: str | None = None
    started_at: float | None = None
    terminated: dict[str, Any] | None = None
    last_terminated: dict[str, Any] | None = None
    restart_count: int = 0
    container_id: str | None = None
    image_id: str = ""
    ever_started: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def succeeded(self) -> bool:
        return self.state == "terminated" and (self.terminated or {}).get("exitCode") == 0

    def wait(self, reason: str, message: str | None = None) -> None:
        if self.state == "terminated" and self.terminated:
            self.last_terminated, self.terminated = self.terminated, None
        self.state, self.waiting_reason, self.waiting_message = "waiting", reason, message

    def run(self, started_at: float, container_id: str, image_id: str) -> None:
        if self.state == "terminated" and self.terminated:
            self.last_terminated = self.terminated
        self.state, self.started_at, self.terminated = "running", started_at, None
        self.container_id, self.image_id, self.ever_started = container_id, image_id, True

    def terminate(self, exit_code: int, reason: str, started_at: float | None, finished_at: float,
                  signal: int | None = None, message: str | None = None) -> None:
        term: dict[str, Any] = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": rfc3339(started_at) if started_at else None,
            "finishedAt": rfc3339(finished_at),
        }
        if signal:
            term["signal"] = signal
        if message:
            term["message"] = message
        if self.container_id:
            term["containerID"] = self.container_id
        self.state, self.terminated = "terminated", term

    def to_api(self) -> dict[str, Any]:
        state: dict[str, Any]
        if self.state == "running":
            state = {"running": {"startedAt": rfc3339(self.started_at or 0)}}
        elif self.state == "terminated":
            state = {"terminated": dict(self.terminated or {})}
        else:
            waiting: dict[str, Any] = {"reason": self.waiting_reason}
            if self.waiting_message:
                waiting["message"] = self.waiting_message
            state = {"waiting": waiting}
        try:
            image = images.normalise(self.image)
        except images.InvalidImageName:
            image = self.image
        out: dict[str, Any] = {
            "name": self.name,
            "image": image,
            "imageID": self.image_id,
            "ready": self.running,
            "started": self.running,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {"terminated": dict(self.last_terminated)} if self.last_terminated else {},
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out


def _waiting_counts_as_stopped(rec: ContainerRecord) -> bool:
    return rec.state == "waiting" and rec.last_terminated is not None


def compute_phase(restart_policy: str, inits: list[ContainerRecord], regular: list[ContainerRecord],
                  initialized: bool, terminal: bool) -> str:
    """The kubelet's getPhase."""
    pending_sidecars = pending_inits = failed_init = 0
    for rec in inits:
        if rec.sidecar:
            if not rec.running and not (rec.state == "waiting" and rec.last_terminated):
                pending_sidecars += 1
            continue
        if rec.running:
            pending_inits += 1
        elif rec.state == "terminated":
            failed_init += (rec.terminated or {}).get("exitCode", 1) != 0
        elif _waiting_counts_as_stopped(rec):
            failed_init += (rec.last_terminated or {}).get("exitCode", 1) != 0
        else:
            pending_inits += 1
    running = waiting = stopped = succeeded = 0
    for rec in regular:
        if rec.running:
            running += 1
        elif rec.state == "terminated":
            stopped += 1
            succeeded += rec.succeeded
        elif _waiting_counts_as_stopped(rec):
            stopped += 1
        else:
            waiting += 1
    if failed_init and restart_policy == "Never":
        return "Failed"
    if pending_inits or (pending_sidecars and not initialized):
        return "Pending"
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if restart_policy == "Never" else "Running"
    return "Pending"


def is_initialized(inits: list[ContainerRecord]) -> bool:
    return all(rec.running if rec.sidecar else rec.succeeded for rec in inits)


def conditions(inits: list[ContainerRecord], regular: list[ContainerRecord], phase: str,
               sandbox_ready: bool, initialized: bool) -> list[tuple[str, str, str | None, str | None]]:
    """(type, status, reason, message) of the conditions the kubelet owns."""
    out: list[tuple[str, str, str | None, str | None]] = [
        ("PodReadyToStartContainers", "True" if sandbox_ready else "False", None, None)
    ]
    if initialized:
        out.append(("Initialized", "True", None, None))
    else:
        names = [r.name for r in inits if not (r.running if r.sidecar else r.succeeded)]
        out.append(("Initialized", "False", "ContainersNotInitialized",
                    f"containers with incomplete status: [{' '.join(names)}]"))
    unready = [r.name for r in [*[i for i in inits if i.sidecar], *regular] if not r.running]
    if not unready and phase in ("Pending", "Running"):
        out += [("ContainersReady", "True", None, None), ("Ready", "True", None, None)]
    elif phase == "Succeeded":
        out += [("ContainersReady", "False", "PodCompleted", None), ("Ready", "False", "PodCompleted", None)]
    else:
        msg = f"containers with unready status: [{' '.join(unready or [r.name for r in regular])}]"
        out += [("ContainersReady", "False", "ContainersNotReady", msg), ("Ready", "False", "ContainersNotReady", msg)]
    out.append(("PodScheduled", "True", None, None))  # the kubelet reports it too (pods bound via nodeName)
    return out


class ConditionClock:
    """Keeps lastTransitionTime stable until a condition's status changes."""

    def __init__(self, existing: list[dict] | None = None) -> None:
        self._seen: dict[str, tuple[str, str]] = {
            c["type"]: (c.get("status", ""), c.get("lastTransitionTime") or rfc3339(0)) for c in existing or []
        }

    def render(self, conds: list[tuple[str, str, str | None, str | None]], now: float) -> list[dict[str, Any]]:
        out = []
        for type_, status, reason, message in conds:
            prev = self._seen.get(type_)
            when = prev[1] if prev and prev[0] == status else rfc3339(now)
            self._seen[type_] = (status, when)
            cond: dict[str, Any] = {"type": type_, "status": status, "lastProbeTime": None,
                                    "lastTransitionTime": when, "reason": reason, "message": message}
            out.append(cond)
        return out


def pod_status(*, phase: str, conditions: list[dict], inits: list[ContainerRecord], regular: list[ContainerRecord],
               start_time: float, reason: str | None = None, message: str | None = None,
               generation: int | None = None) -> dict[str, Any]:
    """The status object written through pods/status (explicit nulls clear stale fields)."""
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "podIP": POD_IP,
        "podIPs": [{"ip": POD_IP}],
        "startTime": rfc3339(start_time),
        "containerStatuses": [r.to_api() for r in regular],
        "reason": reason,
        "message": message,
    }
    if inits:
        status["initContainerStatuses"] = [r.to_api() for r in inits]
    if generation is not None:
        status["observedGeneration"] = generation
    return status

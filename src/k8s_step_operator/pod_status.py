"""Pure judgement of a step Pod's state: what ZenML should see, and why.

Input is the Pod as the API returns it (a JSON dict); nothing here talks to the
cluster, so every rule is unit-tested on hand-written Pods.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

MAIN_CONTAINER = "main"
DELETED = "the step pod was deleted before it finished"
CONFIG_ERROR = "CreateContainerConfigError"


class Phase(str, enum.Enum):
    """Our view of a step Pod."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


@dataclass(frozen=True)
class Verdict:
    """A phase and the human reason ZenML shows (empty when nothing to say)."""

    phase: Phase
    reason: str = ""
    pod: str = ""  # the pod the verdict is about (a multi-pod step: the one that failed)


def parse_time(value: str | None) -> dt.datetime | None:
    """Parse an RFC 3339 API timestamp."""
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _statuses(pod: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return list((pod.get("status") or {}).get(key) or [])


def _condition(pod: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def _terminated_reason(name: str, term: dict[str, Any]) -> str:
    reason = term.get("reason") or "Error"
    text = f"container '{name}' terminated: {reason} (exit code {term.get('exitCode')})"
    if term.get("signal"):
        text += f", signal {term['signal']}"
    if term.get("message"):
        text += f": {term['message'].strip()}"
    return text


def _image_of(pod: dict[str, Any], name: str) -> str:
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if c.get("name") == name:
            return str(c.get("image", ""))
    return ""


def _failed_reason(pod: dict[str, Any]) -> str:
    status = pod.get("status") or {}
    node = (pod.get("spec") or {}).get("nodeName")
    on_node = f" (node {node})" if node else ""
    if status.get("reason"):  # Evicted, DeadlineExceeded, NodeLost, ...
        text = str(status["reason"])
        if status.get("message"):
            text += f": {status['message'].strip()}"
        return text
    disruption = _condition(pod, "DisruptionTarget")  # set by pod GC, taint manager, preemption
    if disruption and disruption.get("status") == "True":
        text = disruption.get("reason") or "DisruptionTarget"
        if disruption.get("message"):
            text += f": {disruption['message'].strip()}"
        return text + on_node
    failed = _first_failed(pod)
    if failed is not None:
        return _terminated_reason(*failed)
    return "pod failed" + on_node


def _main_terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for cs in _statuses(pod, "containerStatuses"):
        if cs.get("name") == MAIN_CONTAINER:
            return (cs.get("state") or {}).get("terminated")
    return None


def main_started(pod: dict[str, Any]) -> bool:
    """Whether the step's container has been created and started (the kubelet has read its environment)."""
    for cs in _statuses(pod, "containerStatuses"):
        if cs.get("name") == MAIN_CONTAINER:
            state = cs.get("state") or {}
            return "running" in state or "terminated" in state
    return False


def _first_failed(pod: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(name, terminated state) of the first container (init containers first) that ended non-zero."""
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in _statuses(pod, key):
            term = (cs.get("state") or {}).get("terminated")
            if term and term.get("exitCode", 0) != 0:
                return str(cs.get("name", "?")), term
    return None


def failed_container(pod: dict[str, Any]) -> str | None:
    """The first container (init containers first) that ended with a non-zero exit code."""
    failed = _first_failed(pod)
    return None if failed is None else failed[0]


def ran_to_an_end(pod: dict[str, Any] | None) -> bool:
    """Whether the step's container ran and ended (or the pod is terminal): what is worth keeping.

    The kubelet reports the container's exit before the pod's phase (about a second later), so the
    main container's terminated state counts as the end too.
    """
    if not pod:
        return False
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") or _main_terminated(pod) is not None


# Pull errors the kubelet retries by itself (it backs off and pulls again): a registry's rate
# limit or outage, a network hiccup, the kubelet's own throttle (registryPullQPS). Matched in
# the kubelet's message, the only place the cause is given.
_TRANSIENT_PULL = (
    "429", "too many requests", "toomanyrequests", "timeout", "timed out", "deadline exceeded",
    "connection refused", "connection reset", "broken pipe", "eof", "temporarily unavailable",
    "service unavailable", "bad gateway", "503", "502", "500 internal server error", "pull qps exceeded",
    "no route to host", "network is unreachable", "try again",
)
# ... and those that no retry mends.
_PERMANENT_PULL = (
    "not found", "manifest unknown", "name unknown", "unauthorized", "authentication required",
    "denied", "forbidden", "invalid reference format", "does not exist", "no match for platform",
)
PULL_REASONS = ("ErrImagePull", "ImagePullBackOff")


def pull_error(waiting: Mapping[str, Any]) -> str | None:
    """``"permanent"`` or ``"transient"`` for an image pull error, None for any other waiting state.

    A message that says neither counts as transient: the start budget still ends the wait.
    """
    reason = waiting.get("reason")
    if reason == "InvalidImageName":
        return "permanent"
    if reason not in PULL_REASONS:
        return None
    message = str(waiting.get("message") or "").lower()
    if any(marker in message for marker in _TRANSIENT_PULL):
        return "transient"
    if any(marker in message for marker in _PERMANENT_PULL):
        return "permanent"
    return "transient"


def worth_keeping(pod: dict[str, Any] | None) -> bool:
    """Whether a failed pod is worth keeping for debugging: it ran to an end and stays.

    A pod already being deleted, or disrupted (``DisruptionTarget``: pod GC after its node went,
    the taint manager, preemption) is on its way out whatever we keep.
    """
    if not ran_to_an_end(pod) or ((pod or {}).get("metadata") or {}).get("deletionTimestamp"):
        return False
    disruption = _condition(pod or {}, "DisruptionTarget")
    return not (disruption and disruption.get("status") == "True")


def _fatal_waiting(pod: dict[str, Any], fatal: Iterable[str], own_secrets: Iterable[str] = ()) -> str | None:
    fatal = set(fatal)
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in _statuses(pod, key):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in fatal and pull_error(waiting) != "transient" and not _awaits(waiting, own_secrets):
                name = cs.get("name", "?")
                text = f"{waiting['reason']}: container '{name}'"
                image = cs.get("image") or _image_of(pod, name)
                if image:
                    text += f" (image {image})"
                if waiting.get("message"):
                    text += f": {waiting['message'].strip()}"
                return text
    return None


# The kubelet could not read a Secret or ConfigMap in time (its watch of it had not synced, e.g. with
# hundreds of pods starting at once); it retries the container on its next sync.
_TRANSIENT_CONFIG = ("failed to sync secret cache", "failed to sync configmap cache")


def _awaits(waiting: Mapping[str, Any], own_secrets: Iterable[str]) -> bool:
    """A container that could not be configured yet, for a reason the kubelet's retry mends: one of the
    step's own Secrets not there yet (the kubelet reached it before the operator's POST of the Secret
    landed), or the kubelet's cache of a Secret or ConfigMap not synced in time."""
    if waiting.get("reason") != CONFIG_ERROR:
        return False
    message = str(waiting.get("message") or "").strip()
    return any(marker in message for marker in _TRANSIENT_CONFIG) or any(
        message == f'secret "{name}" not found' for name in own_secrets
    )


def waiting_reason(pod: dict[str, Any]) -> str:
    """Why a Pending pod is not running yet (scheduler message or container waiting reason)."""
    scheduled = _condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False":
        text = scheduled.get("reason") or "not scheduled"
        if scheduled.get("message"):
            text += f": {scheduled['message']}"
        return text
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in _statuses(pod, key):
            waiting = (cs.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
                text = f"{waiting['reason']}: container '{cs.get('name')}'"
                if waiting.get("message"):
                    text += f": {waiting['message']}"
                return text
    if not (pod.get("spec") or {}).get("nodeName"):
        return "waiting to be scheduled"
    return "containers starting"


def scheduled_at(pod: Mapping[str, Any]) -> dt.datetime | None:
    """When the pod was bound to its node (``PodScheduled`` True), if it was."""
    scheduled = _condition(dict(pod), "PodScheduled")
    if scheduled and scheduled.get("status") == "True":
        return parse_time(scheduled.get("lastTransitionTime"))
    return None


def about(events: Iterable[Mapping[str, Any]], kind: str, name: str) -> list[Mapping[str, Any]]:
    """The events whose involved object is ``kind``/``name``."""
    return [
        e for e in events
        if (e.get("involvedObject") or {}).get("kind") == kind and (e.get("involvedObject") or {}).get("name") == name
    ]


def event_time(event: Mapping[str, Any]) -> dt.datetime | None:
    """When an event last happened (core/v1 or events.k8s.io fields)."""
    series = event.get("series") or {}
    for value in (series.get("lastObservedTime"), event.get("lastTimestamp"), event.get("eventTime"),
                  event.get("firstTimestamp"), (event.get("metadata") or {}).get("creationTimestamp")):
        if value:
            return parse_time(value)
    return None


def event_text(event: Mapping[str, Any]) -> str:
    """``Reason: message`` of an event."""
    return f"{event.get('reason') or 'Event'}: {str(event.get('message') or '').strip()}"


def last_warning(events: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The most recent Warning event, if any."""
    warnings = [e for e in events if e.get("type") == "Warning"]
    return max(warnings, key=lambda e: event_time(e) or _NEVER_BEFORE, default=None)


def explain(pod: dict[str, Any], events: Iterable[Mapping[str, Any]] = ()) -> str:
    """Why a pod has not started: its waiting reason, and the last Warning event about it when
    that says more (a failing mount, a sandbox error, ...)."""
    reason = waiting_reason(pod)
    warning = last_warning(events)
    if warning is None or str(warning.get("message") or "").strip() in reason:
        return reason
    return f"{reason}; last event {event_text(warning)}"


def assess(
    pod: dict[str, Any] | None,
    *,
    fatal_waiting_reasons: Iterable[str] = (),
    schedule_timeout: float | None = None,
    startup_timeout: float | None = None,
    now: dt.datetime | None = None,
    events: Sequence[Mapping[str, Any]] = (),
    own_secrets: Iterable[str] = (),
) -> Verdict:
    """Judge a step Pod. ``pod=None`` means it is gone (deleted before we saw it finish).

    Two budgets: ``schedule_timeout`` from the pod's creation until a node is bound, then
    ``startup_timeout`` from that moment until its containers run (image pulls, mounts).
    ``events`` are the events about this pod; the last warning joins a timeout's reason.
    ``own_secrets``: Secrets the operator creates just after the Job (its environment); a container
    waiting for one of them is not failed (the kubelet retries once it exists).
    """
    if pod is None:
        return Verdict(Phase.FAILED, DELETED)
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    if phase == "Succeeded":
        return Verdict(Phase.SUCCEEDED)
    if phase == "Failed":
        return Verdict(Phase.FAILED, _failed_reason(pod))
    main = _main_terminated(pod)
    if main is not None:  # the step's container is done; sidecars may still be stopping
        if main.get("exitCode") == 0:
            return Verdict(Phase.SUCCEEDED)
        return Verdict(Phase.FAILED, _terminated_reason(MAIN_CONTAINER, main))
    fatal = _fatal_waiting(pod, fatal_waiting_reasons, own_secrets)
    if fatal:
        return Verdict(Phase.FAILED, fatal)
    if phase == "Running":
        return Verdict(Phase.RUNNING)
    reason = explain(pod, events)
    now = now or dt.datetime.now(dt.timezone.utc)
    due = deadline(pod, schedule_timeout, startup_timeout)
    if due is not None and now > due:
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            text = f"pod did not start within {startup_timeout:g}s of being scheduled on node {node}: {reason}"
        else:
            text = f"pod was not scheduled within {schedule_timeout:g}s: {reason}"
        return Verdict(Phase.FAILED, text)
    return Verdict(Phase.PENDING, reason)


def deadline(pod: dict[str, Any], schedule_timeout: float | None, startup_timeout: float | None) -> dt.datetime | None:
    """When a still-pending pod must be failed: its creation plus ``schedule_timeout`` while it has
    no node, the moment it was scheduled plus ``startup_timeout`` after (None: no deadline)."""
    created = parse_time((pod.get("metadata") or {}).get("creationTimestamp"))
    if (pod.get("spec") or {}).get("nodeName"):
        since, budget = scheduled_at(pod) or created, startup_timeout
    else:
        since, budget = created, schedule_timeout
    if since is None or budget is None:
        return None
    return since + dt.timedelta(seconds=budget)


def assess_pod(
    pod: dict[str, Any] | None,
    deleted: bool,
    *,
    fatal_waiting_reasons: Iterable[str] = (),
    schedule_timeout: float | None = None,
    startup_timeout: float | None = None,
    now: dt.datetime | None = None,
    events: Sequence[Mapping[str, Any]] = (),
    own_secrets: Iterable[str] = (),
) -> Verdict:
    """:func:`assess` for a pod that may be gone: gone before it finished is a failure."""
    name = str(((pod or {}).get("metadata") or {}).get("name", ""))
    if deleted:
        verdict = assess(pod)
        if not verdict.phase.finished:
            node = ((pod or {}).get("spec") or {}).get("nodeName")
            verdict = Verdict(Phase.FAILED, DELETED + (f" (it was on node {node})" if node else ""))
    else:
        verdict = assess(
            pod, fatal_waiting_reasons=fatal_waiting_reasons, schedule_timeout=schedule_timeout,
            startup_timeout=startup_timeout, now=now, events=about(events, "Pod", name), own_secrets=own_secrets,
        )
    return Verdict(verdict.phase, verdict.reason, name)


_NEVER = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
_NEVER_BEFORE = dt.datetime.min.replace(tzinfo=dt.timezone.utc)


def _failed_at(pod: dict[str, Any] | None) -> dt.datetime:
    """When a pod failed: its first container's end, else its disruption (latest possible if unknown)."""
    ends = [
        parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        for key in ("initContainerStatuses", "containerStatuses")
        for cs in _statuses(pod or {}, key)
    ]
    disruption = _condition(pod or {}, "DisruptionTarget") or {}
    ends.append(parse_time(disruption.get("lastTransitionTime")))
    return min((t for t in ends if t is not None), default=_NEVER)


def assess_step(
    pods: Iterable[tuple[dict[str, Any], bool]],
    pod_count: int = 1,
    *,
    fatal_waiting_reasons: Iterable[str] = (),
    schedule_timeout: float | None = None,
    startup_timeout: float | None = None,
    submitted: dt.datetime | None = None,
    now: dt.datetime | None = None,
    job: str = "",
    events: Sequence[Mapping[str, Any]] = (),
    own_secrets: Iterable[str] = (),
) -> Verdict:
    """Judge a step from all its pods (present or deleted): what ZenML sees.

    The pod that failed first decides (the others were stopped because of it, and a
    pod deleted before it finished explains least); success needs ``pod_count`` pods
    that succeeded.
    With no pod yet, ``schedule_timeout`` counts from ``submitted``, and the Job's last
    warning event (``job``: its name) says why.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    pods = list(pods)
    verdicts = [
        assess_pod(
            pod, deleted, fatal_waiting_reasons=fatal_waiting_reasons, schedule_timeout=schedule_timeout,
            startup_timeout=startup_timeout, now=now, events=events, own_secrets=own_secrets,
        )
        for pod, deleted in pods
    ]
    failed = [(v, _failed_at(pod)) for v, (pod, _) in zip(verdicts, pods, strict=True) if v.phase is Phase.FAILED]
    if failed:
        return min(failed, key=lambda f: (f[0].reason.startswith(DELETED), f[1], f[0].pod))[0]
    if sum(v.phase is Phase.SUCCEEDED for v in verdicts) >= pod_count:
        return Verdict(Phase.SUCCEEDED)
    running = [v for v in verdicts if v.phase is Phase.RUNNING]
    if running:
        return running[0]
    pending = [v for v in verdicts if v.phase is Phase.PENDING]
    if pending:
        return min(pending, key=lambda v: v.pod)
    if not verdicts:
        warning = last_warning(about(events, "Job", job))
        why = f"; last event {event_text(warning)}" if warning else ""
        if schedule_timeout is not None and submitted is not None:
            if (now - submitted).total_seconds() > schedule_timeout:
                return Verdict(Phase.FAILED, f"the Job created no pod within {schedule_timeout:g}s{why}")
        return Verdict(Phase.PENDING, "waiting for the Job's pods" + why)
    return Verdict(Phase.PENDING, "waiting for the other pods")


def progress(prev: dict[str, Any] | None, cur: dict[str, Any]) -> list[str]:
    """Human lines for what changed between two observations of the same pod."""
    lines: list[str] = []
    before_node = ((prev or {}).get("spec") or {}).get("nodeName")
    node = (cur.get("spec") or {}).get("nodeName")
    if prev is None:
        lines.append("created")
    if node and node != before_node:
        lines.append(f"scheduled on node {node}")
    prev_phase = ((prev or {}).get("status") or {}).get("phase")
    phase = (cur.get("status") or {}).get("phase")
    if not node:
        before = waiting_reason(prev) if prev else ""
        now_reason = waiting_reason(cur)
        if now_reason != before and now_reason != "waiting to be scheduled":
            lines.append(f"waiting: {now_reason}")
    elif phase == "Pending":
        before = waiting_reason(prev) if prev and (prev.get("spec") or {}).get("nodeName") else ""
        now_reason = waiting_reason(cur)
        if now_reason != before:
            lines.append(f"waiting: {now_reason}")
    if phase != prev_phase and phase in ("Running", "Succeeded", "Failed"):
        lines.append(f"phase {phase}")
    return lines


def _all_statuses(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The init containers' statuses (sidecars among them), then the regular containers'."""
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def started_containers(pod: Mapping[str, Any]) -> list[str]:
    """Names of the pod's containers (init, sidecar, regular) that are running or have run: their logs exist."""
    return [str(cs.get("name", "")) for cs in _all_statuses(pod) if {"running", "terminated"} & set(cs.get("state") or {})]


def ended_containers(pod: Mapping[str, Any]) -> list[str]:
    """Names of the pod's containers that have ended for good, so their logs are complete: every started
    one once the pod is terminal; before that, each terminated container the kubelet will not start
    again (not a sidecar, restarted until the pod ends; not one the pod's restartPolicy runs again)."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return started_containers(pod)
    spec = pod.get("spec") or {}
    sidecars = {c.get("name") for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"}
    policy = spec.get("restartPolicy") or "Always"
    ended = []
    for cs in _all_statuses(pod):
        term = (cs.get("state") or {}).get("terminated")
        name = str(cs.get("name", ""))
        if term is None or name in sidecars:
            continue
        if policy == "Never" or (policy == "OnFailure" and term.get("exitCode") == 0):
            ended.append(name)
    return ended

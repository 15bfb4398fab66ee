"""Pure judgement of a run's preflight: which step, which setting, and why (no Kubernetes client).

At submission the operator builds every step's objects and has the API server dry-run them
(validation and admission, nothing stored). This module turns what comes back — an API
``Status`` with its ``details.causes`` — into findings that name the step and the setting the
user wrote, and renders them as one error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from .settings import MAIN_CONTAINER_NAME, POD_SETTINGS

# where a pod field comes from, in the settings users write
_POD_FIELDS = {
    "volumes": "volumes",
    "tolerations": "tolerations",
    "nodeSelector": "node_selectors",
    "affinity": "affinity",
    "securityContext": "security_context",
    "hostIPC": "host_ipc",
    "schedulerName": "scheduler_name",
    "imagePullSecrets": "image_pull_secrets",
    "priorityClassName": "priority_class_name",
    "runtimeClassName": "runtime_class_name",
}
_TOP_FIELDS = {"serviceAccountName": "service_account_name", "activeDeadlineSeconds": "active_deadline_seconds"}
_MAIN_FIELDS = {
    "volumeMounts": "volume_mounts",
    "env": "env",
    "envFrom": "env_from",
    "resources": "resources",
    "securityContext": "container_security_context",
    "imagePullPolicy": "image_pull_policy",
}
_META_FIELDS = {"labels": "labels", "annotations": "annotations"}
_PATH_RE = re.compile(r"^(?P<head>[A-Za-z]+)(?:\[(?P<index>\d+)\])?(?P<rest>.*)$")


@dataclass(frozen=True)
class Finding:
    """One reason a step cannot run: the step, the setting (or object field), why."""

    step: str
    field: str
    message: str

    def line(self) -> str:
        return f"step `{self.step}`: {self.field}: {self.message}"


def _split(path: str) -> tuple[str, Optional[int], str]:
    match = _PATH_RE.match(path)
    if not match:
        return path, None, ""
    index = match["index"]
    return match["head"], None if index is None else int(index), match["rest"]


def settings_field(pod: Mapping[str, Any], api_field: str) -> str:
    """The setting behind a field of the step's pod (``spec.containers[0].volumeMounts[0].name``
    → ``pod_settings.volume_mounts[0].name``); the pod's own path when no setting maps to it.

    A Job's ``spec.template.`` prefix is dropped first.
    """
    path = api_field[len("spec.template."):] if api_field.startswith("spec.template.") else api_field
    section, _, rest = path.partition(".")
    if section == "metadata":
        head, _, tail = rest.partition(".")
        if head in _META_FIELDS:
            return f"{POD_SETTINGS}.{_META_FIELDS[head]}" + (f".{tail}" if tail else "")
        return f"the pod's {path}"
    if section != "spec":
        return f"the object's {api_field}"
    head, index, tail = _split(rest)
    suffix = (f"[{index}]" if index is not None else "") + tail
    if head in _TOP_FIELDS:
        return _TOP_FIELDS[head] + suffix
    if head in _POD_FIELDS:
        return f"{POD_SETTINGS}.{_POD_FIELDS[head]}{suffix}"
    if head in ("containers", "initContainers") and index is not None:
        containers = (pod.get("spec") or {}).get(head) or []
        name = containers[index].get("name") if index < len(containers) else None
        inner, inner_index, inner_tail = _split(tail.lstrip("."))
        inner_suffix = (f"[{inner_index}]" if inner_index is not None else "") + inner_tail
        if head == "containers" and name == MAIN_CONTAINER_NAME and inner in _MAIN_FIELDS:
            return f"{POD_SETTINGS}.{_MAIN_FIELDS[inner]}{inner_suffix}"
        if name is not None:
            kind = "containers" if head == "containers" else _init_kind(containers[index])
            return f"{POD_SETTINGS}.{kind} (container {name!r}).{inner}{inner_suffix}"
    return f"the pod's {path}"


def _init_kind(container: Mapping[str, Any]) -> str:
    return "sidecar_containers" if container.get("restartPolicy") == "Always" else "init_containers"


def refusal(step: str, kind: str, pod: Mapping[str, Any], status: Mapping[str, Any], code: int) -> list[Finding]:
    """Findings from the API server's refusal (``status``: the ``Status`` body) of a dry run of
    the step's ``kind`` (Pod, Job, Secret, Service) whose pod is ``pod``."""
    causes = [c for c in ((status.get("details") or {}).get("causes") or []) if c.get("field")]
    if causes:
        return [
            Finding(step, settings_field(pod, c["field"]), _cause_text(c))
            for c in causes
        ]
    message = str(status.get("message") or f"HTTP {code}")
    if code == 404 and (status.get("details") or {}).get("kind") == "namespaces":
        return [Finding(step, "kubernetes_namespace", message)]
    if code == 403 and "service account" in message:  # the ServiceAccount admission plugin's refusal
        return [Finding(step, "service_account_name", message)]
    what = {403: "refused", 404: "not found", 409: "conflict"}.get(code, f"HTTP {code}")
    return [Finding(step, f"the step's {kind} ({what})", message)]


def _cause_text(cause: Mapping[str, Any]) -> str:
    text = str(cause.get("message") or cause.get("reason") or "invalid")
    return f"{text} (the API server's check of {cause['field']})"


def denied(step: str, checks: Iterable[tuple[str, str]]) -> list[Finding]:
    """Findings for permissions an access review denied: (``verb resource in ns``, why)."""
    return [Finding(step, "permissions", f"{missing} ({why})") for missing, why in checks]


def render(operator: str, findings: Iterable[Finding], steps: int) -> str:
    """One error for the whole run, a line per finding, grouped by step in the order given."""
    findings = list(findings)
    failing = len({f.step for f in findings})
    lines = [
        f"preflight of step operator `{operator}`: {failing} of {steps} step(s) would be refused by the "
        "cluster; nothing was run:"
    ]
    lines += [f"  - {f.line()}" for f in findings]
    lines.append("(turn this check off with the setting `preflight: false`)")
    return "\n".join(lines)

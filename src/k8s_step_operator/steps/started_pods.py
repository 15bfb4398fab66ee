"""PURE: the pods an object created by a resource step starts, and how their log lines are prefixed.

A ``batch/v1`` Job's pods carry its uid in ``batch.kubernetes.io/controller-uid`` (a
Job of the same name from before is not matched); a ``v1`` Pod is its own. Lines are
prefixed like the step operator's: ``[step]`` for a pod's only container,
``[step:container]`` when it has several; pods after the first (a Job's retries or
parallel pods) add their name: ``[step/pod:container]``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from ..pod_status import started_containers

__all__ = ["JOB_UID_LABEL", "log_label", "pod_query", "started_containers"]

JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"


def pod_query(obj: Mapping[str, Any]) -> Optional[dict[str, str]]:
    """The pod list query selecting the pods ``obj`` starts (None: it starts none we follow)."""
    meta = obj.get("metadata") or {}
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if api_version == "batch/v1" and kind == "Job" and meta.get("uid"):
        return {"labelSelector": f"{JOB_UID_LABEL}={meta['uid']}"}
    if api_version == "v1" and kind == "Pod" and meta.get("name"):
        return {"fieldSelector": f"metadata.name={meta['name']}"}
    return None


def log_label(step: str, pod: Mapping[str, Any], container: str, first_pod: bool) -> str:
    """``step``, ``step:container`` or ``step/pod:container`` (see the module docstring)."""
    spec = pod.get("spec") or {}
    count = len(spec.get("containers") or []) + len(spec.get("initContainers") or [])
    label = step if first_pod else f"{step}/{(pod.get('metadata') or {}).get('name', '')}"
    return label if count == 1 else f"{label}:{container}"

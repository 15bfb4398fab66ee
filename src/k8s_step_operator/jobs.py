"""Pure builders for the step's Job, its headless Service and ownership links (no API calls).

A step runs as one Job, created running (suspended only for Kueue, which
admits it); the Secret with ZenML's environment follows, owned by the Job.
The Job carries ``ttlSecondsAfterFinished``, so whatever happens to the
orchestrator the API server's controllers remove the Job, its pods, the
Secret and the Service after the TTL: nothing of ours has to run for that.

``backoffLimit: 0`` (ZenML retries steps itself) and a ``podFailurePolicy``
that fails the Job at the first failed pod: for a multi-pod step the Job
controller then stops the other pods at once.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from k8s_step_operator.names import dns1123_label, pod_name

# ZenML 0.98's names for a multi-pod step's environment (zenml.integrations.kubernetes.constants)
ENV_POD_COUNT = "ZENML_KUBERNETES_POD_COUNT"
ENV_MAIN_ADDRESS = "ZENML_KUBERNETES_MAIN_ADDRESS"
ENV_MAIN_PORT = "ZENML_KUBERNETES_MAIN_PORT"
ENV_POD_RANK = "ZENML_KUBERNETES_POD_RANK"
MAIN_PORT = 29500
# set by the Job controller on every pod of an Indexed Job
COMPLETION_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def job_name(prefix: Optional[str], pipeline: str, step: str, step_run_id: str, pod_count: int = 1) -> str:
    """The step's Job name: unique per step run, a DNS-1035 label when it also names a Service.

    Pods of an Indexed Job get the hostname ``<job>-<index>`` (at most 63
    characters), and the headless Service shares the Job's name, so a
    multi-pod Job name starts with a letter and leaves room for the index.
    """
    if pod_count <= 1:
        return pod_name(prefix, pipeline, step, step_run_id)
    room = 62 - len(str(pod_count - 1))
    name = pod_name(prefix, pipeline, step, step_run_id)
    if not name[:1].isalpha():
        name = f"j{name}"
    return name if len(name) <= room else dns1123_label(name, max_len=room)


def pod_failure_policy() -> dict[str, Any]:
    """Fail the Job at the first failed pod: a non-zero exit of ``main`` or a disruption."""
    return {
        "rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "NotIn", "values": [0]}},
            {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
    }


def build_job(
    pod: Mapping[str, Any],
    name: str,
    *,
    ttl_seconds_after_finished: Optional[int],
    pod_count: int = 1,
    queue_name: Optional[str] = None,
    annotations: Optional[Mapping[str, str]] = None,
) -> dict[str, Any]:
    """The ``batch/v1 Job`` that runs ``pod`` (built by :func:`manifest.build_pod`); suspended when
    ``queue_name`` gives it to Kueue, which resumes it once admitted.

    The Job's labels are the pod's; ``annotations`` are added to the Job only.
    With ``pod_count > 1`` the Job is Indexed (one pod per index, all at once)
    and its pods' hostnames resolve through the headless Service ``name``.
    """
    meta = pod["metadata"]
    spec = dict(pod["spec"])
    template_meta: dict[str, Any] = {"labels": dict(meta.get("labels") or {})}
    if meta.get("annotations"):
        template_meta["annotations"] = dict(meta["annotations"])
    job_spec: dict[str, Any] = {
        "suspend": bool(queue_name),
        "backoffLimit": 0,
        "podFailurePolicy": pod_failure_policy(),
        "template": {"metadata": template_meta, "spec": spec},
    }
    if ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = ttl_seconds_after_finished
    if pod_count > 1:
        job_spec.update({"completionMode": "Indexed", "completions": pod_count, "parallelism": pod_count})
        spec["subdomain"] = name
        spec["containers"] = [_with_rank(c) if c.get("name") == "main" else c for c in spec["containers"]]
    labels = dict(meta.get("labels") or {})
    if queue_name:
        labels[QUEUE_LABEL] = queue_name
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": {**(meta.get("annotations") or {}), **(annotations or {})},
        },
        "spec": job_spec,
    }


def _with_rank(container: Mapping[str, Any]) -> dict[str, Any]:
    """The main container with the pod's rank (its completion index) as ``ZENML_KUBERNETES_POD_RANK``."""
    rank = {
        "name": ENV_POD_RANK,
        "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}},
    }
    return {**container, "env": [*(container.get("env") or []), rank]}


def multi_pod_environment(name: str, namespace: str, pod_count: int) -> dict[str, str]:
    """ZenML's environment of a multi-pod step: pod count, rank 0's stable address, the port."""
    return {
        ENV_POD_COUNT: str(pod_count),
        ENV_MAIN_ADDRESS: f"{name}-0.{name}.{namespace}.svc",
        ENV_MAIN_PORT: str(MAIN_PORT),
    }


def build_headless_service(job: Mapping[str, Any]) -> dict[str, Any]:
    """The headless Service giving each pod of a multi-pod Job a stable DNS name; owned by the Job."""
    meta = job["metadata"]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": dict(meta.get("labels") or {})},
        "spec": {
            "clusterIP": "None",
            "selector": {JOB_NAME_LABEL: meta["name"]},
            "ports": [{"name": "main", "port": MAIN_PORT}],
            # the pods must find each other while they start, before any is ready
            "publishNotReadyAddresses": True,
        },
    }
    return owned_by(service, job)


def reference(job: Mapping[str, Any]) -> dict[str, Any]:
    """What is kept of a created Job until its Secret and Service are sent: kind, name, namespace, uid and
    labels (:func:`owned_by_all`, :func:`build_headless_service`). The server's whole answer, with the
    pod template, status and field ownership, is many times that, and a fan-out keeps one per step."""
    meta = job["metadata"]
    return {
        "apiVersion": job.get("apiVersion"),
        "kind": job.get("kind"),
        "metadata": {key: meta[key] for key in ("name", "namespace", "uid", "labels") if key in meta},
    }


def owned_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` owned by the created ``owner`` (its server-assigned uid).

    Garbage collection deletes ``obj`` when ``owner`` goes. Not a controller
    reference, and it blocks nothing (no finalizer permission needed).
    """
    return owned_by_all(obj, [owner])


def owned_by_all(obj: Mapping[str, Any], owners: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A copy of ``obj`` owned by each of the created ``owners``: garbage collection deletes it once
    the last of them is gone."""
    refs = [
        {"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"], "uid": o["metadata"]["uid"]}
        for o in owners
    ]
    return {**obj, "metadata": {**obj["metadata"], "ownerReferences": refs}}


def rank_of(pod: Mapping[str, Any]) -> Optional[int]:
    """The pod's completion index in an Indexed Job (None for a single-pod Job)."""
    value = ((pod.get("metadata") or {}).get("labels") or {}).get(COMPLETION_INDEX_LABEL)
    return int(value) if value is not None and str(value).isdigit() else None

"""PURE: a step's objects, how to find them again, how to judge them and what clean-up removes.

Values in, values out: no ZenML client, no Kubernetes client. ``step_operator.py`` gathers the
values (settings, the step's identity, the active user, local paths) and sends the requests.

Creation order: the Job first, running (unless Kueue admits it), then the Secret with ZenML's
environment, owned by the created Job, so that garbage collection removes the Secret with the Job
whatever happens to the orchestrator. The steps of one run submitted together share one Secret
(:func:`batch_secret`: each step's values under keys of its own, the Secret owned by all their Jobs;
``secret_batches`` groups them). ``submit`` returns after the Job; the Secret follows on a sender
thread. The pod reads the Secret only when the kubelet configures its container, after the sandbox is
up; if the kubelet ever gets there before the Secret's POST has landed, it retries, and :func:`judge`
does not count that wait as a failure. A refused Secret fails its steps (``refused``). Once every pod
reading it has started its step container (:func:`env_read`), the Secret is no longer needed.
"""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from . import jobs, manifest, mounts, names, pod_status, preflight
from .settings import K8sStepOperatorSettings

if TYPE_CHECKING:
    from concurrent.futures import Future

    from .kube.logs import LogFollower

JOBS = "/apis/batch/v1/namespaces/{namespace}/jobs"
CORE = "/api/v1/namespaces/{namespace}"


@dataclass(frozen=True)
class User:
    """The active ZenML user, as ZenML's operator uses it: id, OIDC Linux ids."""

    id: str
    linux_uid: Any = None
    linux_gid: Any = None


@dataclass(frozen=True)
class StepObjects:
    """What submitting a step creates: its Job (with the pod as template) and Secret."""

    namespace: str
    name: str
    pod: dict
    job: dict
    secret: dict


@dataclass
class Submission:
    """What this process knows about a submitted step run: its Job, and what was seen of its pods."""

    namespace: str
    job: str
    step: str
    settings: K8sStepOperatorSettings
    submitted: dt.datetime
    verdict: Optional[pod_status.Verdict] = None
    logs: Dict[str, "LogFollower"] = field(default_factory=dict)  # by "pod/container"
    read_here: Optional["LogFollower"] = field(default=None, repr=False)  # not started: wait() reads it itself
    events_seen: set = field(default_factory=set, repr=False)
    seen: Dict[str, dict] = field(default_factory=dict, repr=False)
    follow_up: Optional["Future[None]"] = field(default=None, repr=False)  # sending the Secret (and Service)
    refused: str = ""  # why the API server refused what follows the Job (the Job was deleted again)
    env_secret: str = ""  # the Secret the step's environment is in (shared by a burst), if not its own
    batched: bool = False  # submitted by this process: its Secret is tracked in ``secret_batches``
    env_released: bool = False  # its pods have read its environment (or it is over)

    @property
    def secret(self) -> str:
        """The Secret holding ZenML's environment: the first Job's of the burst it was submitted with."""
        return self.env_secret or secret_name(self.job)

    @property
    def job_path(self) -> str:
        return f"{JOBS.format(namespace=self.namespace)}/{self.job}"

    @property
    def secret_path(self) -> str:
        return f"{CORE.format(namespace=self.namespace)}/secrets/{self.secret}"


def secret_name(job: str) -> str:
    """The per-step Secret's name: ``<job>-env``."""
    return f"{job}-env"


def build_objects(
    settings: K8sStepOperatorSettings,
    identity: manifest.StepIdentity,
    *,
    namespace: str,
    image: str,
    command: List[str],
    environment: Mapping[str, str],
    volumes: Sequence[mounts.Mount],
    user: User,
    operator_id: str,
    host_paths: Sequence[str] = (),
    template: Optional[Mapping[str, Any]] = None,
) -> StepObjects:
    """The step's pod (as the Job's template), Job and Secret. ``host_paths``: directories the pod
    mounts at the same paths (``local=True``: the pods share this machine); ``template``: the parsed
    ``pod_template_file``."""
    name = jobs.job_name(
        settings.job_name_prefix, identity.pipeline_name, identity.step_name, identity.step_run_id, settings.pod_count
    )
    pod = manifest.build_pod(settings, identity, image, command, namespace, template=template)
    pod = manifest.with_env(manifest.mount_volumes(pod, list(volumes)), settings.pipeline_env)
    if host_paths:
        pod = manifest.mount_host_paths(pod, list(host_paths))
    pod = manifest.run_as(pod, user.linux_uid, user.linux_gid)
    pod["metadata"] = {**pod["metadata"], "name": name}
    pod["metadata"]["annotations"] = {**pod["metadata"]["annotations"], manifest.ANNOTATION_ZENML_USER_ID: user.id}
    env = dict(environment)
    if settings.pod_count > 1:
        env.update(jobs.multi_pod_environment(name, namespace, settings.pod_count))
    pod = manifest.read_env_from_secret(pod, secret_name(name), name, list(env))
    secret = manifest.build_env_secret(secret_name(name), namespace, identity, env, owner=name)
    job = jobs.build_job(
        pod, name, ttl_seconds_after_finished=settings.ttl_seconds_after_finished,
        pod_count=settings.pod_count, queue_name=settings.queue_name,
        annotations={
            manifest.ANNOTATION_ZENML_STEP_NAME: identity.step_name,
            manifest.ANNOTATION_ZENML_STEP_OPERATOR: operator_id,
        },
    )
    return StepObjects(namespace, name, pod, job, secret)


Request = Tuple[str, str, Any]  # (kind, collection path, body)


def dry_run_requests(objects: StepObjects, settings: K8sStepOperatorSettings, claims: Mapping[str, dict]) -> List[Request]:
    """What the preflight POSTs with ``dryRun=All`` for one step: its pod, Job and Secret, each
    per-run claim (``claims``: workspace -> claim manifest) and, for several pods, the Service."""
    core = CORE.format(namespace=objects.namespace)
    requests: List[Request] = [
        ("Pod", f"{core}/pods", objects.pod),
        ("Job", JOBS.format(namespace=objects.namespace), objects.job),
        ("Secret", f"{core}/secrets", objects.secret),
    ]
    requests += [("PersistentVolumeClaim", f"{core}/persistentvolumeclaims", claim) for claim in claims.values()]
    if settings.pod_count > 1:  # owned by the Job as it will be: a stand-in for the uid it will get
        job = {**objects.job, "metadata": {**objects.job["metadata"], "uid": "00000000-0000-0000-0000-000000000000"}}
        requests.append(("Service", f"{core}/services", jobs.build_headless_service(job)))
    return requests


def with_env_secret(objects: StepObjects, secret: str) -> StepObjects:
    """The step's objects with the Job's pod template reading its environment from ``secret`` (a burst's
    shared Secret) instead of its own; the keys stay the step's. (``pod``, already dry-run, is left as is.)"""
    own = objects.secret["metadata"]["name"]
    if secret == own:
        return objects
    template = objects.job["spec"]["template"]
    spec = manifest.retarget_env_secret(template["spec"], own, secret)
    job = {**objects.job, "spec": {**objects.job["spec"], "template": {**template, "spec": spec}}}
    return StepObjects(objects.namespace, objects.name, objects.pod, job, objects.secret)


def batch_secret(name: str, secrets: Sequence[Mapping[str, Any]], created_jobs: Sequence[Mapping[str, Any]]) -> Request:
    """Secret ``name`` (the one the burst's pods refer to: its first step's, which need not be the first
    created) for the environments of a burst's steps (``secrets``: each step's own, keys already the
    step's), owned by every created Job: garbage collection deletes it with the last of them."""
    first = secrets[0]
    data: Dict[str, str] = {}
    for secret in secrets:
        data.update(secret.get("stringData") or {})
    core = CORE.format(namespace=first["metadata"]["namespace"])
    body = {**first, "metadata": {**first["metadata"], "name": name}, "stringData": data}
    return "Secret", f"{core}/secrets", jobs.owned_by_all(body, created_jobs)


def dependents(created_job: Mapping[str, Any], pod_count: int) -> List[Request]:
    """What follows the created Job besides its Secret, owned by it: for several pods the headless Service."""
    core = CORE.format(namespace=created_job["metadata"]["namespace"])
    if pod_count > 1:
        return [("Service", f"{core}/services", jobs.build_headless_service(created_job))]
    return []


def env_read(pods: List[Tuple[dict, bool]], pod_count: int) -> bool:
    """Whether the kubelet has read the step's environment for good: each of its ``pod_count`` pods has
    started (or ended) its step container, or is gone. (A Job with no pod yet has not.)"""
    live = _live(pods)
    if len(pods) < pod_count:
        return False
    return all(pod_status.ran_to_an_end(pod) or pod_status.main_started(pod) for pod in live)


def job_selector(step_run_id: str) -> str:
    """The label selector of a step run's Job."""
    return f"{manifest.LABEL_MANAGED_BY}={manifest.MANAGED_BY},{manifest.LABEL_STEP_RUN_ID}={names.label_value(step_run_id)}"


def from_job(job: Mapping[str, Any], step_name: str, settings: K8sStepOperatorSettings, now: dt.datetime) -> Submission:
    """A submission rebuilt from its Job (another process submitted it)."""
    meta = job["metadata"]
    step = (meta.get("annotations") or {}).get(manifest.ANNOTATION_STEP, step_name)
    spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    return Submission(
        meta["namespace"], meta["name"], step, settings, pod_status.parse_time(meta.get("creationTimestamp")) or now,
        env_secret=manifest.env_secret_of(spec, meta["name"]) or "",
    )


def judge(sub: Submission, pods: List[Tuple[dict, bool]], events: List[dict]) -> pod_status.Verdict:
    """The step's verdict from its pods and the events about them and its Job."""
    if sub.refused:
        return pod_status.Verdict(pod_status.Phase.FAILED, sub.refused)
    settings = sub.settings
    return pod_status.assess_step(
        pods,
        settings.pod_count,
        fatal_waiting_reasons=settings.fail_on_container_waiting_reasons or (),
        schedule_timeout=settings.schedule_timeout,
        startup_timeout=settings.startup_timeout,
        submitted=None if settings.queue_name else sub.submitted,
        job=sub.job,
        events=events,
        own_secrets=(sub.secret,),
    )


def next_deadline(sub: Submission, pods: List[Tuple[dict, bool]]) -> Optional[dt.datetime]:
    """When the step must be judged again even if nothing changes: a pending pod's budget ends."""
    settings = sub.settings
    live = _live(pods)
    if not live:
        return None if settings.queue_name else sub.submitted + dt.timedelta(seconds=settings.schedule_timeout)
    due = [pod_status.deadline(p, settings.schedule_timeout, settings.startup_timeout) for p in live if _pending(p)]
    return min((d for d in due if d is not None), default=None)


EVENTS_AFTER = dt.timedelta(seconds=10)  # a pod not started by then (image cached) is worth explaining: its events


def events_due(sub: Submission, pods: List[Tuple[dict, bool]]) -> Optional[dt.datetime]:
    """When the step's Warning events become worth watching, or None while they are not: every pod
    started (or the step over) needs none. A step with no pod yet (a Job refused its pod: quota) or a
    pod still Pending (a mount, a sandbox, a pull) gets them :data:`EVENTS_AFTER` after submission; a
    pod that is normally scheduled and started within that time costs no event watch."""
    if sub.verdict is not None and sub.verdict.phase.finished:
        return None
    live = _live(pods)
    if live and not any(_pending(p) for p in live):
        return None
    return sub.submitted + EVENTS_AFTER


def _live(pods: List[Tuple[dict, bool]]) -> List[dict]:
    """The pods not deleted."""
    return [pod for pod, deleted in pods if not deleted]


def _pending(pod: dict) -> bool:
    """Whether the pod is Pending (not yet scheduled, or its containers not yet started)."""
    return ((pod.get("status") or {}).get("phase") or "Pending") == "Pending"


def keeps_pods(sub: Submission, pods: List[Tuple[dict, bool]]) -> bool:
    """Whether clean-up keeps the pods (``cleanup_policy``): ``keep``, or ``delete-succeeded`` for a
    step that did not succeed and has a pod that ran to an end. A failed pod stuck Pending (image
    pull, start budget) would hold its node's resources until the TTL, so it goes at once."""
    policy = sub.settings.cleanup_policy
    succeeded = sub.verdict is not None and sub.verdict.phase is pod_status.Phase.SUCCEEDED
    ended = any(pod_status.worth_keeping(pod) for pod, deleted in pods if not deleted)
    return policy == "keep" or (policy == "delete-succeeded" and not succeeded and ended)


def removal_path(sub: Submission, keep_pods: bool) -> str:
    """One DELETE: the Secret when the pods stay, else the Job (garbage collection takes its pods,
    Secret and Service)."""
    return sub.secret_path if keep_pods else sub.job_path


def local_problems(step: str, settings: K8sStepOperatorSettings, command_step: bool) -> List[preflight.Finding]:
    """What is wrong with a step's settings without asking the cluster."""
    found = []
    if settings.pod_count > 1 and not command_step:
        found.append(preflight.Finding(
            step, "pod_count",
            f"requests {settings.pod_count} pods but is not a command step; a regular step on "
            "several pods would write its artifacts, outputs and logs once per pod (allowed: 1, or any count for "
            "a CommandStep)",
        ))
    for problem in settings.merged_problems() + (settings.pod_settings.pod_rule_problems() if settings.pod_settings else []):
        field_name, _, why = problem.partition(": ")
        found.append(preflight.Finding(step, field_name, why))
    return found


def unknown_settings(settings: K8sStepOperatorSettings, allowed: Sequence[str]) -> Optional[str]:
    """A misspelled setting would be silently ignored (ZenML keeps extras): the error naming it."""
    unknown = sorted(set(settings.model_extra or {}) - set(allowed))
    if not unknown:
        return None
    hints = [
        f"{key!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(key, allowed, 1)) else repr(key)
        for key in unknown
    ]
    return f"step_operator settings: unknown field(s) {', '.join(hints)}; allowed: {', '.join(sorted(allowed))}"

"""The ``k8s`` step operator: each step runs as its own Pod, watched rather than polled.

Thin shell over the pure core: ``manifest`` builds the Pod and Secret,
``pod_status`` judges the Pod, ``kube`` talks to the API.

The Kubernetes client (and ``kube``, which uses it) is imported on first use, not with
this module: ZenML also builds the stack's components inside every step's own pod, where
this class is loaded but never submits anything, and importing the client's ~900
modules there would add about half a second to every step.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Type, cast

from zenml.config.build_configuration import BuildConfiguration
from zenml.enums import ExecutionStatus, StackComponentType
from zenml.logger import get_logger
from zenml.stack import Stack, StackValidator
from zenml.step_operators import BaseStepOperator

from . import manifest, names, pod_status, rbac
from .flavor import K8sStepOperatorConfig
from .settings import K8sStepOperatorSettings

if TYPE_CHECKING:
    from kubernetes import client

    from .kube import retry
    from .kube.logs import LogFollower
    from .kube.podwatch import PodWatch
    from zenml.config.base_settings import BaseSettings
    from zenml.config.step_run_info import StepRunInfo
    from zenml.models import PipelineSnapshotBase, StepRunResponse

logger = get_logger(__name__)

IMAGE_KEY = "k8s_step_operator"
LOG_JOIN_TIMEOUT = 5.0

_STATUS = {
    pod_status.Phase.PENDING: ExecutionStatus.PROVISIONING,
    pod_status.Phase.RUNNING: ExecutionStatus.RUNNING,
    pod_status.Phase.SUCCEEDED: ExecutionStatus.COMPLETED,
    pod_status.Phase.FAILED: ExecutionStatus.FAILED,
}


@dataclass
class Submission:
    """What this process knows about a submitted step run."""

    namespace: str
    pod: str
    secret: str
    step: str
    settings: K8sStepOperatorSettings
    verdict: Optional[pod_status.Verdict] = None
    logs: Optional["LogFollower"] = None
    seen: Optional[dict] = field(default=None, repr=False)
    # the Secret owns the Pod: deleting the Secret lets garbage collection delete the Pod
    anchored: bool = False


class K8sStepOperator(BaseStepOperator):
    """Runs steps as Kubernetes Pods built from ``K8sStepOperatorSettings``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._api: Optional["client.ApiClient"] = None
        self._known: Dict[str, Submission] = {}

    # ------------------------------------------------------------- settings
    @property
    def config(self) -> K8sStepOperatorConfig:
        return cast(K8sStepOperatorConfig, self._config)

    @property
    def settings_class(self) -> Optional[Type["BaseSettings"]]:
        return K8sStepOperatorSettings

    @property
    def validator(self) -> Optional[StackValidator]:
        """Like ZenML's operator: a remote artifact store and registry, unless ``local``."""
        if self.config.local:
            return None

        def _remote(stack: "Stack") -> Tuple[bool, str]:
            if stack.artifact_store.config.is_local:
                return False, (
                    f"the k8s step operator runs steps in pods that must reach the artifact store, but "
                    f"`{stack.artifact_store.name}` is local; use a remote artifact store, or set "
                    f"`local=True` on the step operator if the cluster's pods share this machine"
                )
            registry = stack.container_registry
            if registry is not None and registry.config.is_local:
                return False, (
                    f"the k8s step operator pulls step images from the container registry, but "
                    f"`{registry.name}` is local; use a remote container registry"
                )
            return True, ""

        return StackValidator(
            required_components={StackComponentType.CONTAINER_REGISTRY, StackComponentType.IMAGE_BUILDER},
            custom_validation_function=_remote,
        )

    def get_docker_builds(self, snapshot: "PipelineSnapshotBase") -> List[BuildConfiguration]:
        """One build per step that runs on this operator."""
        return [
            BuildConfiguration(key=IMAGE_KEY, settings=step.config.docker_settings, step_name=name)
            for name, step in snapshot.step_configurations.items()
            if step.config.uses_step_operator(self.name)
        ]

    def _settings(self, container: Any) -> K8sStepOperatorSettings:
        return cast(K8sStepOperatorSettings, self.get_settings(container))

    def _namespace(self, settings: K8sStepOperatorSettings) -> str:
        return settings.kubernetes_namespace or self.config.kubernetes_namespace

    @staticmethod
    def _policy(settings: K8sStepOperatorSettings) -> "retry.RetryPolicy":
        from .kube import retry

        # rest.request takes its own timeout argument; the policy must not inject the client's
        return retry.RetryPolicy(max_retries=settings.max_api_retries, request_timeout=None)

    @staticmethod
    def _timeout(settings: K8sStepOperatorSettings) -> float:
        return float(settings.api_request_timeout or 30)

    # ---------------------------------------------------------------- client
    @property
    def api(self) -> "client.ApiClient":
        """The ApiClient: service connector, in-cluster, or kubeconfig context."""
        from .kube.connection import load_api_client

        connector = None if self.config.incluster else self.get_connector()
        if self._api is not None and not (connector and self.connector_has_expired()):
            return self._api
        self._api = load_api_client(
            context=self.config.kubernetes_context,
            incluster=self.config.incluster,
            kubeconfig=self.config.kubeconfig,
            connector=connector,
        )
        return self._api

    def _watch(self, namespace: str) -> "PodWatch":
        """The process's shared pod watch for ``namespace`` (started on first use)."""
        from .kube.podwatch import PodWatch

        return PodWatch.shared(self.api, namespace)

    def _call(self, settings: K8sStepOperatorSettings, method: str, path: str, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        from .kube import rest, retry
        from .kube.errors import forbidden_text

        try:
            return retry.call(
                rest.request, self.api, method, path, policy=self._policy(settings), timeout=self._timeout(settings), **kwargs
            )
        except ApiException as exc:
            if exc.status == 403:
                access = rbac.request_access(method, path)
                resource = access.resource + (f"/{access.subresource}" if access.subresource else "")
                text = forbidden_text(exc, access.verb, resource, access.namespace)
                if text:
                    raise PermissionError(text) from exc
            raise

    # ---------------------------------------------------------------- submit
    def submit(self, info: "StepRunInfo", entrypoint_command: List[str], environment: Dict[str, str]) -> None:
        """Create the step's Secret (ZenML's environment) and Pod; returns at once."""
        settings = self._settings(info)
        _refuse_unknown_settings(settings)
        if settings.pod_count != 1:
            raise ValueError(f"pod_count: the k8s step operator runs one pod per step; got {settings.pod_count}")
        namespace = self._namespace(settings)
        identity = manifest.StepIdentity(
            run_name=info.run_name,
            pipeline_name=info.pipeline.name,
            step_name=info.pipeline_step_name,
            step_run_id=str(info.step_run_id),
            run_id=str(info.run_id),
        )
        pod_name = names.pod_name(settings.job_name_prefix, identity.pipeline_name, identity.step_name, identity.step_run_id)
        secret_name = f"{pod_name}-env"
        pod = manifest.build_pod(
            settings, identity, info.get_image(key=IMAGE_KEY), list(entrypoint_command), namespace, secret_name
        )
        pod = manifest.mount_claims(pod, resolve_pvolumes(info, settings.pvolumes))
        if self.config.local:
            environment = {**local_environment(), **environment}
            pod = manifest.mount_host_paths(pod, local_paths())
        secret = manifest.build_env_secret(secret_name, namespace, identity, environment)
        self._watch(namespace)  # start watching before the pod exists
        self.create_pod_with_secret(settings, namespace, pod, secret)
        self._known[identity.step_run_id] = Submission(
            namespace, pod["metadata"]["name"], secret_name, identity.step_name, settings, anchored=True
        )
        logger.info("Step `%s`: created pod %s/%s", identity.step_name, namespace, pod["metadata"]["name"])

    def create_pod_with_secret(
        self, settings: K8sStepOperatorSettings, namespace: str, pod: dict, secret: dict
    ) -> dict:
        """The Secret first (the Pod reads it), then the Pod, owned by the Secret from birth.

        Two writes, no race: the Secret exists before the kubelet could look for it, and deleting
        it later removes the Pod too (garbage collection). If the Pod cannot be created, the
        Secret is deleted again, so nothing is left behind.
        """
        base = f"/api/v1/namespaces/{namespace}"
        anchor = self._call(settings, "POST", f"{base}/secrets", body=secret)
        try:
            return self._call(settings, "POST", f"{base}/pods", body=manifest.owned_by(pod, anchor))
        except Exception:
            self._delete(settings, f"{base}/secrets/{secret['metadata']['name']}")
            raise

    def _delete(
        self, settings: K8sStepOperatorSettings, path: str, grace: Optional[int] = None, propagation: str = "Background"
    ) -> bool:
        """DELETE, ignoring not-found; True when something was deleted."""
        from kubernetes.client.exceptions import ApiException

        body: Dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        if grace is not None:
            body["gracePeriodSeconds"] = grace
        try:
            self._call(settings, "DELETE", path, body=body)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    # --------------------------------------------------------------- locate
    def _locate(self, step_run: "StepRunResponse") -> Optional[Submission]:
        """Our record of the step run, or one rebuilt from the cluster (found by label)."""
        known = self._known.get(str(step_run.id))
        if known is not None:
            return known
        settings = self._settings(step_run)
        namespace = self._namespace(settings)
        watch = self._watch(namespace)
        if not watch.wait_synced(timeout=float(settings.api_request_timeout or 30)):
            raise RuntimeError(f"could not list pods in namespace {namespace}: {watch.last_error}")
        name = watch.find(manifest.LABEL_STEP_RUN_ID, names.label_value(str(step_run.id)))
        if name is None:
            return None
        pod, _ = watch.lookup(name)
        secret = next(
            (
                env["secretRef"]["name"]
                for c in (pod or {}).get("spec", {}).get("containers", [])
                for env in c.get("envFrom") or []
                if "secretRef" in env and c.get("name") == pod_status.MAIN_CONTAINER
            ),
            f"{name}-env",
        )
        step = ((pod or {}).get("metadata", {}).get("annotations") or {}).get(manifest.ANNOTATION_STEP, step_run.name)
        found = Submission(namespace, name, secret, step, settings, anchored=manifest.is_owned_by_secret(pod, secret))
        self._known[str(step_run.id)] = found
        return found

    def _judge(self, sub: Submission, pod: Optional[dict], deleted: bool) -> pod_status.Verdict:
        if deleted:
            verdict = pod_status.assess(pod, fatal_waiting_reasons=())
            if not verdict.phase.finished:
                node = (pod or {}).get("spec", {}).get("nodeName")
                where = f" (it was on node {node})" if node else ""
                verdict = pod_status.Verdict(
                    pod_status.Phase.FAILED, f"the step pod was deleted before it finished{where}"
                )
            return verdict
        return pod_status.assess(
            pod,
            fatal_waiting_reasons=sub.settings.fail_on_container_waiting_reasons or (),
            startup_timeout=sub.settings.startup_timeout,
        )

    # ---------------------------------------------------------------- status
    def get_status(self, step_run: "StepRunResponse") -> ExecutionStatus:
        """Read the Pod (from the shared watch's cache) and judge it."""
        try:
            sub = self._locate(step_run)
        except Exception as exc:  # transient: never fail a running step for it
            logger.warning("Step `%s`: cannot read its pod right now (%s)", step_run.name, exc)
            return ExecutionStatus.RUNNING
        if sub is None:
            logger.error("Step `%s`: no pod found for step run %s", step_run.name, step_run.id)
            return ExecutionStatus.FAILED
        if sub.verdict is not None and sub.verdict.phase.finished:
            return _STATUS[sub.verdict.phase]
        pod, deleted = self._watch(sub.namespace).lookup(sub.pod)
        if pod is None and not deleted:
            return ExecutionStatus.PROVISIONING
        verdict = self._judge(sub, pod, deleted)
        if verdict.phase.finished:
            self._finish(step_run, sub, verdict)
        return _STATUS[verdict.phase]

    def wait(self, step_run: "StepRunResponse") -> ExecutionStatus:
        """Block on the shared watch until the Pod finishes; stream its logs meanwhile."""
        sub = self._locate(step_run)
        if sub is None:
            logger.error("Step `%s`: no pod found for step run %s", step_run.name, step_run.id)
            return ExecutionStatus.FAILED
        watch = self._watch(sub.namespace)
        if not watch.wait_synced(self._timeout(sub.settings)):
            raise RuntimeError(f"cannot watch pods in namespace {sub.namespace}: {watch.last_error}")

        def judge(pod: Optional[dict], deleted: bool) -> Optional[pod_status.Verdict]:
            if pod is None and not deleted:
                return None
            self._report_progress(sub, pod)
            if pod is not None and not deleted:
                self._maybe_follow_logs(sub, pod)
            verdict = self._judge(sub, pod, deleted)
            return verdict if verdict.phase.finished else None

        def next_deadline() -> Optional[dt.datetime]:
            pod, _ = watch.lookup(sub.pod)
            if pod is None or (pod.get("status") or {}).get("phase") != "Pending":
                return None
            return pod_status.startup_deadline(pod, sub.settings.startup_timeout)

        verdict = watch.wait_for(sub.pod, judge, tick=next_deadline)
        if verdict is None:  # the watch was closed under us
            return self.get_status(step_run)
        if sub.logs is not None:
            sub.logs.join(LOG_JOIN_TIMEOUT)
        self._finish(step_run, sub, verdict)
        return _STATUS[verdict.phase]

    def _report_progress(self, sub: Submission, pod: Optional[dict]) -> None:
        if pod is None:
            return
        for line in pod_status.progress(sub.seen, pod):
            logger.info("Step `%s`: pod %s %s", sub.step, sub.pod, line)
        sub.seen = pod

    def _maybe_follow_logs(self, sub: Submission, pod: dict) -> None:
        if sub.logs is not None or not sub.settings.stream_logs:
            return
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            state = cs.get("state") or {}
            if cs.get("name") == pod_status.MAIN_CONTAINER and ("running" in state or "terminated" in state):
                prefix = f"[{sub.step}] " if sub.settings.log_prefix else ""

                def emit(line: str, prefix: str = prefix) -> None:
                    sys.stdout.write(f"{prefix}{line}\n")
                    sys.stdout.flush()

                from .kube.logs import LogFollower

                sub.logs = LogFollower(self.api, sub.namespace, sub.pod, pod_status.MAIN_CONTAINER, emit).start()
                return

    def _finish(self, step_run: "StepRunResponse", sub: Submission, verdict: pod_status.Verdict) -> None:
        """Remember the verdict once; tell the user (and ZenML's step run) why it failed."""
        if sub.verdict is not None:
            return
        sub.verdict = verdict
        if verdict.phase is pod_status.Phase.FAILED:
            logger.error("Step `%s` failed in pod %s/%s: %s", sub.step, sub.namespace, sub.pod, verdict.reason)
            _record_failure_reason(step_run, f"pod {sub.namespace}/{sub.pod}: {verdict.reason}")
        else:
            logger.info("Step `%s`: pod %s finished", sub.step, sub.pod)

    # ------------------------------------------------------- cancel, cleanup
    def cancel(self, step_run: "StepRunResponse") -> None:
        """Delete the Pod now (grace period from the settings) and its Secret."""
        sub = self._locate(step_run)
        if sub is None:
            return
        self._remove(sub, delete_pod=True, grace=sub.settings.delete_grace_period_seconds)
        logger.info("Step `%s`: cancelled, pod %s deleted", sub.step, sub.pod)

    def cleanup_step_submission(self, step_run: "StepRunResponse") -> None:
        """Apply the clean-up policy; the Secret with ZenML's credentials never outlives the step."""
        sub = self._locate(step_run)
        if sub is None:
            return
        policy = sub.settings.cleanup_policy
        succeeded = sub.verdict is not None and sub.verdict.phase is pod_status.Phase.SUCCEEDED
        pod, _ = self._watch(sub.namespace).lookup(sub.pod)
        # a failed pod is kept for debugging only if it ran to an end; one stuck Pending (image pull,
        # startup timeout) would hold its node's resources and retry for ever, so it goes at once
        ended = pod_status.ran_to_an_end(pod)
        keep = policy == "keep" or (policy == "delete-succeeded" and not succeeded and ended)
        self._remove(sub, delete_pod=not keep, grace=None if ended else 0)
        self._known.pop(str(step_run.id), None)

    def _remove(self, sub: Submission, delete_pod: bool, grace: Optional[int]) -> None:
        """Delete the Secret always, the Pod if asked; one request when the Secret owns the Pod.

        - delete an ended Pod: DELETE the Secret; garbage collection deletes the Pod it owns.
        - keep the Pod: DELETE the Secret with ``Orphan`` (the Pod loses its owner, not its life).
        - a grace period (cancel, a Pod that has not ended) or no ownership: DELETE the Pod
          explicitly first, then the Secret (orphaning, so the Pod's grace period stands).
        """
        base = f"/api/v1/namespaces/{sub.namespace}"
        explicit = delete_pod and (grace is not None or not sub.anchored)
        if explicit:
            self._delete(sub.settings, f"{base}/pods/{sub.pod}", grace=grace)
        cascade = delete_pod and not explicit
        self._delete(sub.settings, f"{base}/secrets/{sub.secret}", propagation="Background" if cascade else "Orphan")
        if sub.logs is not None:
            sub.logs.stop()


def _record_failure_reason(step_run: "StepRunResponse", reason: str) -> None:
    """Give ZenML our reason when the step itself recorded none (OOMKilled, Evicted, ...)."""
    try:
        from zenml.client import Client
        from zenml.models import ExceptionInfo, StepRunUpdate

        store = Client().zen_store
        current = store.get_run_step(step_run.id, hydrate=True)
        if current.exception_info is None:
            store.update_run_step(
                step_run.id,
                StepRunUpdate(exception_info=ExceptionInfo(traceback=reason, message=reason)),
            )
    except Exception as exc:  # noqa: BLE001 - the log line above already told the user
        logger.debug("could not record the failure reason on the step run: %s", exc)


def resolve_pvolumes(info: "StepRunInfo", pvolumes: Dict[str, str]) -> Dict[str, str]:
    """Turn ``pvolumes`` sources into claim names: a step input's value, else the text itself."""
    claims: Dict[str, str] = {}
    inputs = info.step_run.regular_inputs if pvolumes else {}
    parameters = info.config.parameters or {}
    for path, source in pvolumes.items():
        if source in inputs:
            value: Any = inputs[source][0].load()
        elif source in parameters:
            value = parameters[source]
        else:
            value = source
        if isinstance(value, dict):  # a manifest output
            value = (value.get("metadata") or {}).get("name", "")
        if not isinstance(value, str) or not value:
            raise ValueError(
                f"pvolumes[{path!r}]: input {source!r} must hold a PVC name (a string), got {type(value).__name__}"
            )
        claims[path] = value
    return claims


def local_environment() -> Dict[str, str]:
    """With ``local=True`` the pods share this machine: point them at the same ZenML config
    directory, so local stores (SQLite, local artifact store) resolve to the same paths."""
    from zenml.config.global_config import GlobalConfiguration

    return {"ZENML_CONFIG_PATH": GlobalConfiguration().config_directory}


def local_paths() -> list[str]:
    """With ``local=True``: the host directories the step pod mounts at the same paths — ZenML's
    config directory (its SQLite store and default artifact stores) and the active stack's local
    artifact store when it lies elsewhere."""
    from zenml.client import Client
    from zenml.config.global_config import GlobalConfiguration

    config_dir = os.path.realpath(GlobalConfiguration().config_directory)
    paths = [config_dir]
    store = Client().active_stack.artifact_store
    if store.config.is_local:
        root = os.path.realpath(store.path)
        if not (root + os.sep).startswith(config_dir + os.sep):
            paths.append(root)
    return paths


def _refuse_unknown_settings(settings: K8sStepOperatorSettings) -> None:
    """A misspelled setting would be silently ignored (ZenML keeps extras); refuse it by name."""
    from .flavor import K8sStepOperatorConfig

    allowed = set(K8sStepOperatorConfig.model_fields)
    unknown = sorted(set(settings.model_extra or {}) - allowed)
    if unknown:
        import difflib

        hints = [
            f"{key!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(key, allowed, 1)) else repr(key)
            for key in unknown
        ]
        raise ValueError(
            f"step_operator settings: unknown field(s) {', '.join(hints)}; allowed: {', '.join(sorted(allowed))}"
        )

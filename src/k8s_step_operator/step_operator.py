"""The ``k8s`` step operator: each step runs as its own Job, its pods watched rather than polled.

Thin shell over the pure core: ``submission`` builds a step's objects (with ``manifest``
and ``jobs``), finds and judges them and plans their clean-up, ``allocation`` applies
resource pools, ``preflight`` words refusals, ``kube`` talks to the API.

The Kubernetes client (and ``kube``, which uses it) is imported on first use, not with
this module: ZenML also builds the stack's components inside every step's own pod, where
this class is loaded but never submits anything, and importing the client's ~900
modules there would add about half a second to every step.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Type, cast

from urllib3.exceptions import HTTPError
from zenml.config.build_configuration import BuildConfiguration
from zenml.enums import ExecutionStatus, StackComponentType
from zenml.logger import get_logger
from zenml.stack import Stack, StackValidator
from zenml.step_operators import BaseStepOperator

from . import allocation, jobs, manifest, mounts, names, pod_status, preflight, rbac
from .flavor import K8sStepOperatorConfig
from .secret_batches import Batch, SecretBatches
from .settings import K8sStepOperatorSettings, StepSettings
from .submission import (
    CORE,
    JOBS,
    StepObjects,
    Submission,
    User,
    batch_secret,
    build_objects,
    dependents,
    dry_run_requests,
    env_read,
    events_due,
    from_job,
    job_selector,
    judge,
    keeps_pods,
    local_problems,
    next_deadline,
    removal_path,
    unknown_settings,
    with_env_secret,
)

if TYPE_CHECKING:
    from kubernetes import client
    from zenml.config.base_settings import BaseSettings
    from zenml.config.step_run_info import StepRunInfo
    from zenml.models import PipelineSnapshotBase, ResourceRequestResponse, StepRunResponse

    from .kube import retry
    from .kube.client import Client
    from .kube.podwatch import PodWatch

logger = get_logger(__name__)

IMAGE_KEY = "k8s_step_operator"
# what the preflight's dry runs stand in for values only known when a step is submitted
PREFLIGHT_IMAGE = "zenml-preflight:latest"  # no registry known at all
PREFLIGHT_ID = "00000000-0000-0000-0000-000000000000"
PREFLIGHT_CLAIM = "preflight-claim"
LOG_JOIN_TIMEOUT = 5.0
FOLLOW_UP_SENDERS = 1  # the thread sending the Secrets (and Services) after submit has returned, and deleting them
LOG_REST_READERS = 8  # threads reading the rest of a cut log (LogFollower.rest_reader), started as needed
# an environment Secret waits this long for the next step to join it (steps submitted back to back share it),
# at most SECRET_MAX_LINGER_S after its first step's Job was created: far less than the ~0.9 s in which the
# kubelet of an idle local node reaches the container (a Secret missing then costs its ~13 s retry)
SECRET_QUIET_S = 0.01
SECRET_MAX_LINGER_S = 0.25
EVENTS_SYNC_S = 1.0  # how long a failing step waits for the namespace's warnings to be listed, to tell them with it

_READ_LOG = object()  # what wait()'s judge returns when the step's log is there to be read

_STATUS = {
    pod_status.Phase.PENDING: ExecutionStatus.PROVISIONING,
    pod_status.Phase.RUNNING: ExecutionStatus.RUNNING,
    pod_status.Phase.SUCCEEDED: ExecutionStatus.COMPLETED,
    pod_status.Phase.FAILED: ExecutionStatus.FAILED,
}


class K8sStepOperator(BaseStepOperator):
    """Runs each step as a Kubernetes Job built from ``K8sStepOperatorSettings``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._api: Optional["client.ApiClient"] = None
        self._known: Dict[str, Submission] = {}
        self._preflight_passed: set[str] = set()
        self._admitted: set[str] = set()  # (namespace, image, settings) whose pod a dry run admitted
        self._admitting: Dict[str, threading.Lock] = {}  # one dry run per key, also from concurrent submits
        self._admitting_lock = threading.Lock()
        self._sender_pool: Optional[ThreadPoolExecutor] = None
        self._rest_reader_pool: Optional[ThreadPoolExecutor] = None
        self._batches = SecretBatches(quiet=SECRET_QUIET_S, max_linger=SECRET_MAX_LINGER_S)
        self._local_cache: Dict[str, Tuple[Dict[str, str], List[str]]] = {}  # active stack id -> local mounts
        self._local_lock = threading.Lock()
        self._senders_lock = threading.Lock()

    # ------------------------------------------------------------- settings
    @property
    def config(self) -> K8sStepOperatorConfig:
        return cast(K8sStepOperatorConfig, self._config)

    @property
    def settings_class(self) -> Optional[Type["BaseSettings"]]:
        """What ZenML resolves step settings into; its cross-field pod rules wait for the preflight,
        whose error names the step."""
        return StepSettings

    @property
    def supports_resource_pool_allocation(self) -> bool:
        """ZenML hands us what a resource pool granted (see :meth:`submit_with_allocation`)."""
        return True

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
        """One build per step that runs on this operator; for a dynamic pipeline also the pipeline's
        own, since its steps are known only at run time (without it ZenML finds no build at all).

        ZenML calls this with every step's configuration before any step runs: the preflight
        (:meth:`_preflight`) fails the run here when the cluster would refuse a step.
        """
        self._preflight(snapshot)
        builds = [
            BuildConfiguration(key=IMAGE_KEY, settings=step.config.docker_settings, step_name=name)
            for name, step in snapshot.step_configurations.items()
            if step.config.uses_step_operator(self.name)
        ]
        if getattr(snapshot, "is_dynamic", False):
            builds.append(BuildConfiguration(key=IMAGE_KEY, settings=snapshot.pipeline_configuration.docker_settings))
        return builds

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
        """The ApiClient: in-cluster, service connector, or kubeconfig context.

        A service connector's client is made anew once the connector has expired; expiry is asked
        before ``get_connector()``, which replaces an expired connector with a fresh one (asked
        after, it would always say "not expired" and the stale client would be kept).
        """
        from .kube.connection import fix_zenml_connector_verification, load_api_client

        incluster = self.config.incluster
        if self._api is not None and (incluster or not self.connector_has_expired()):
            return self._api
        fix_zenml_connector_verification()
        self._api = load_api_client(
            context=self.config.kubernetes_context,
            incluster=incluster,
            kubeconfig=self.config.kubeconfig,
            connector=None if incluster else self.get_connector(),
        )
        return self._api

    def _watch(self, namespace: str) -> "PodWatch":
        """The process's shared pod watch for ``namespace`` (started on first use)."""
        from .kube.podwatch import PodWatch

        return PodWatch.shared(self.api, namespace, client_of=lambda: self.api, index_label=jobs.JOB_NAME_LABEL)

    def _kube(self, settings: K8sStepOperatorSettings) -> "Client":
        """The client for this step's requests: its timeout, its retries, an RBAC denial made readable."""
        from .kube.client import Client

        return Client(self.api, timeout=self._timeout(settings), policy=self._policy(settings), on_forbidden=_readable_denial)

    # ---------------------------------------------------------------- submit
    def submit(self, info: "StepRunInfo", entrypoint_command: List[str], environment: Dict[str, str]) -> None:
        """Create the step's Job (and its Secret with ZenML's environment); returns at once."""
        self._submit(info, entrypoint_command, environment, self._settings(info))

    def submit_with_allocation(
        self,
        info: "StepRunInfo",
        entrypoint_command: List[str],
        environment: Dict[str, str],
        allocated_resource_request: Optional["ResourceRequestResponse"],
    ) -> None:
        """:meth:`submit` with a resource pool's allocation applied, as ZenML 0.98 does."""
        settings = allocation.apply(self._settings(info), allocated_resource_request)
        self._submit(info, entrypoint_command, environment, settings)

    def _submit(
        self, info: "StepRunInfo", entrypoint_command: List[str], environment: Dict[str, str],
        settings: K8sStepOperatorSettings,
    ) -> None:
        _refuse_unknown_settings(settings)
        step = info.pipeline_step_name
        problems = local_problems(step, settings, info.config.command is not None)
        if problems:
            raise ValueError(problems[0].line())
        identity = manifest.StepIdentity(
            run_name=info.run_name,
            pipeline_name=info.pipeline.name,
            step_name=step,
            step_run_id=str(info.step_run_id),
            run_id=str(info.run_id),
            project_id=str(info.snapshot.project_id),
        )
        run_claims = self._ensure_run_claims(settings, identity, info)
        volumes = resolve_pvolumes(info, settings.pvolumes) + mounts.workspace_mounts(
            settings.workspaces, run_claims, identity.run_name, identity.step_name
        )
        image = info.get_image(key=IMAGE_KEY)
        objects = self._objects(settings, identity, image, list(entrypoint_command), environment, volumes, _active_user())
        dumped = settings.model_dump_json()
        if self._preflight_key(step, dumped) not in self._preflight_passed:
            self._admit(self._admit_key(objects.namespace, image, dumped), settings, objects)
        # the steps of a run submitted while a Secret's POST is out share the next one
        batch = self._batches.join((objects.namespace, identity.run_id), objects.secret["metadata"]["name"])
        objects = with_env_secret(objects, batch.name)
        try:
            created = self.create_job(settings, objects.job)
        except BaseException:
            self._send_batch(self._batches.withdraw(batch))
            raise
        sub = Submission(
            objects.namespace, objects.name, identity.step_name, settings,
            pod_status.parse_time(created["metadata"].get("creationTimestamp")) or _now(),
            env_secret=batch.name, batched=True,
        )
        sub.follow_up = batch.done
        self._known[identity.step_run_id] = sub
        logger.info("Step `%s`: created job %s/%s", identity.step_name, objects.namespace, objects.name)
        # the hand-off comes last: a woken sender takes the GIL whenever this thread waits on I/O (the
        # log line's write, 1-2 ms of this call measured), and nothing after it here waits
        self._send_batch(self._batches.hand_in(batch, sub, created, objects.secret))

    def _objects(
        self, settings: K8sStepOperatorSettings, identity: manifest.StepIdentity, image: str,
        command: List[str], environment: Dict[str, str], volumes: List[mounts.Mount], user: User,
    ) -> StepObjects:
        """The step's pod, Job and Secret (:func:`submission.build_objects`), with ``local``'s paths
        and the pod template's file read."""
        from .settings_files import pod_template_of

        host_paths: List[str] = []
        if self.config.local:
            local_env, host_paths = self._local_mounts()
            environment = {**local_env, **environment}
        return build_objects(
            settings, identity, namespace=self._namespace(settings), image=image, command=command,
            environment=environment, volumes=volumes, user=user, operator_id=str(self.id), host_paths=host_paths,
            template=pod_template_of(settings),
        )

    def _local_mounts(self) -> Tuple[Dict[str, str], List[str]]:
        """``local=True``: ZenML's environment and the host paths to mount, read once per active stack.
        Reading them builds the stack's components, which ZenML does anew in every thread (0.1-0.3 s
        of CPU each time, measured with 10 submitting threads)."""
        from zenml.client import Client

        key = str(Client().active_stack_model.id)
        found = self._local_cache.get(key)
        if found is None:
            with self._local_lock:  # concurrent first submits: one of them reads, the others wait
                found = self._local_cache.get(key)
                if found is None:
                    found = self._local_cache[key] = (local_environment(), local_paths())
        return found

    def _ensure_run_claims(
        self, settings: K8sStepOperatorSettings, identity: manifest.StepIdentity, info: "StepRunInfo"
    ) -> Dict[str, str]:
        """The per-run claim of each workspace with a ``claim_template``: created by the run's first step
        on this operator (a later step finds it: 409), recorded on that step run for
        ``cleanup_run_resources``. Returns workspace name -> claim name."""
        from .kube.errors import AlreadyExists, ApiError

        claims: Dict[str, str] = {}
        namespace = self._namespace(settings)
        for ws in mounts.templated(settings.workspaces):
            name = mounts.run_claim_name(identity.run_name, identity.run_id, ws)
            labels = {manifest.LABEL_MANAGED_BY: manifest.MANAGED_BY, manifest.RUN_ID_LABEL: names.label_value(identity.run_id),
                      manifest.LABEL_RUN: names.label_value(identity.run_name)}
            claim = mounts.run_claim(ws, settings.workspaces[ws], name, namespace, labels,
                                     {manifest.ANNOTATION_RUN: identity.run_name})
            path = f"{CORE.format(namespace=namespace)}/persistentvolumeclaims"
            try:
                created = self._kube(settings).create(path, claim, retry=True)
            except AlreadyExists:
                pass  # an earlier step of the run created it
            except ApiError as exc:
                raise ValueError(
                    f"workspaces[{ws!r}].claim_template: cannot create the run's claim {namespace}/{name}: {exc.message}"
                ) from exc
            else:
                logger.info("Run `%s`: created claim %s/%s for workspace `%s`", identity.run_name, namespace, name, ws)
                _record_run_claim(info, created, f"{path}/{name}", _has_cleanup_hook(info))
            claims[ws] = name
        return claims

    # ------------------------------------------------------------- preflight
    def _preflight(self, snapshot: "PipelineSnapshotBase") -> None:
        """Every step on this operator checked before any runs: the rules known without a cluster,
        then the API server's dry run of its pod, Job and Secret (and Service) — validation,
        admission, namespace, service account — and an access review of our other verbs.
        One error names every step and setting that would be refused."""
        steps = [(n, s) for n, s in snapshot.step_configurations.items() if s.config.uses_step_operator(self.name)]
        findings: List[preflight.Finding] = []
        user: Optional[User] = None
        # permissions are reviewed once per namespace (and need for per-run claims); a denial is reported
        # once, under the first step that needs it, and no step needing it counts as passed
        reviewed: Dict[Tuple[str, bool], List[preflight.Finding]] = {}
        for name, step in steps:
            settings = self._settings(step)
            if not settings.preflight:
                continue
            dumped = settings.model_dump_json()
            key = self._preflight_key(name, dumped)
            if key in self._preflight_passed:
                continue
            image = ""
            found = local_problems(name, settings, step.config.command is not None)
            denied: List[preflight.Finding] = []
            if not found:
                user = user or _active_user()
                namespace = self._namespace(settings)
                access = (namespace, bool(mounts.templated(settings.workspaces)))
                try:
                    image = self._likely_image(step, snapshot.pipeline_configuration.name)
                    found = self._dry_run(name, step, settings, user, snapshot.pipeline_configuration.name, image)
                    if access not in reviewed:
                        reviewed[access] = self._review_access(name, settings, namespace)
                        found += reviewed[access]
                except (OSError, HTTPError) as exc:  # transport: the cluster cannot be asked
                    raise RuntimeError(
                        f"preflight of step operator `{self.name}`: cannot ask the cluster about step `{name}` "
                        f"({type(exc).__name__}: {exc}); set `preflight: false` to submit without asking"
                    ) from exc
                denied = reviewed[access]
            findings += found
            if not found and not denied:
                self._preflight_passed.add(key)
                # a dynamic pipeline's steps run under other names with their template's settings: with the
                # same image (a skipped build's parent image), their first submit needs no dry run either
                self._admitted.add(self._admit_key(self._namespace(settings), image, dumped))
        if findings:
            raise ValueError(preflight.render(self.name, findings, len(steps)))

    @staticmethod
    def _admit_key(namespace: str, image: str, settings_json: str) -> str:
        """A pod in ``namespace`` running ``image`` with these settings was admitted by a dry run."""
        return f"{namespace}\0{image}\0{settings_json}"

    @staticmethod
    def _preflight_key(step: str, settings_json: str) -> str:
        """A step with these exact settings (``model_dump_json``) passed the preflight: its submission
        needs no dry run."""
        return f"{step}\0{settings_json}"

    def _dry_run(
        self, name: str, step: Any, settings: K8sStepOperatorSettings, user: User, pipeline: str, image: str
    ) -> List[preflight.Finding]:
        from .kube.errors import ApiError

        identity = manifest.StepIdentity(
            run_name="preflight", pipeline_name=pipeline, step_name=name,
            step_run_id=PREFLIGHT_ID, run_id=PREFLIGHT_ID, project_id=PREFLIGHT_ID,
        )
        known = set(step.spec.inputs or {}) | set(step.config.parameters or {})

        def stand_in(source: str) -> str:
            if source in known:
                return PREFLIGHT_CLAIM
            raise KeyError(source)

        try:
            volumes = mounts.pvolume_mounts(settings.pvolumes, stand_in)
        except ValueError as exc:
            field, _, why = str(exc).partition(": ")
            return [preflight.Finding(name, field, why)]
        claims = {ws: PREFLIGHT_CLAIM for ws in mounts.templated(settings.workspaces)}
        volumes += mounts.workspace_mounts(settings.workspaces, claims, "preflight", name)
        try:
            objects = self._objects(settings, identity, image, ["true"], {}, volumes, user)
        except ValueError as exc:  # e.g. a pod template that cannot be read
            return [preflight.Finding(name, "pod_settings", str(exc))]
        run_claims = {
            ws: mounts.run_claim(ws, settings.workspaces[ws], PREFLIGHT_CLAIM, objects.namespace, {}, {})
            for ws in mounts.templated(settings.workspaces)
        }
        kube = self._kube(settings)
        for kind, path, body in dry_run_requests(objects, settings, run_claims):
            try:
                kube.create(path, body, dry_run=True, retry=True)
            except PermissionError as exc:
                return [preflight.Finding(name, "permissions", str(exc))]
            except ApiError as exc:
                if kind == "PersistentVolumeClaim":
                    return [preflight.Finding(name, "workspaces.claim_template",
                                              f"the API server refuses the claim: {exc.message}")]
                return preflight.refusal(name, kind, objects.pod, _status_of(exc), exc.status or 0)
        return []

    def _likely_image(self, step: Any, pipeline: str) -> str:
        """The image the step will run, as far as it is known before the build: the parent image when
        the build is skipped, else a tag in the stack's container registry (so that admission rules
        about registries judge the dry run as they will judge the step)."""
        docker = step.config.docker_settings
        if docker.skip_build and docker.parent_image:
            return str(docker.parent_image)
        registry = active_component(StackComponentType.CONTAINER_REGISTRY)
        if registry is not None:
            return f"{registry.config.uri.rstrip('/')}/zenml:{names.label_value(pipeline)}-preflight"
        return str(docker.parent_image or PREFLIGHT_IMAGE)

    def _review_access(self, name: str, settings: K8sStepOperatorSettings, namespace: str) -> List[preflight.Finding]:
        """What the dry runs cannot show: may we watch pods, read logs, resume and delete Jobs, ..."""
        from .doctor import run_access_reviews

        checks = [c for c in rbac.required_checks(namespace) if c.verb != "create"]
        if mounts.templated(settings.workspaces):
            checks += rbac.workspace_checks(namespace)
        results = run_access_reviews(self.api, checks)
        return preflight.denied(name, [(c.missing(), c.why) for c, allowed, _ in results if not allowed])

    def _admit(self, key: str, settings: K8sStepOperatorSettings, objects: StepObjects) -> None:
        """Admission's verdict on the step's pod and Secret (dry runs), once per distinct (namespace, image, settings):
        it depends on the pod's spec, so a dynamic pipeline fanning out one step N times — from
        concurrent threads too — asks once, and the others wait for that answer."""
        if key in self._admitted:
            return
        with self._admitting_lock:
            lock = self._admitting.setdefault(key, threading.Lock())
        with lock:
            if key not in self._admitted:
                self._dry_runs(settings, objects)
                self._admitted.add(key)

    def _dry_runs(self, settings: K8sStepOperatorSettings, objects: StepObjects) -> None:
        """The pod's and the Secret's dry runs side by side: the first submit waits for one round trip,
        not two. The pod's refusal wins (it names the setting); else the Secret's is raised."""
        refused: List[BaseException] = []

        def secret() -> None:
            try:
                self._dry_run_secret(settings, objects.secret)
            except BaseException as exc:  # noqa: BLE001 - raised in the submitting thread
                refused.append(exc)

        beside = threading.Thread(target=secret, name="k8sso-dry-run", daemon=True)
        beside.start()
        try:
            self._dry_run_pod(settings, objects.pod, objects.job)
        finally:
            beside.join()
        if refused:
            raise refused[0]

    def _dry_run_pod(self, settings: K8sStepOperatorSettings, pod: dict, job: dict) -> None:
        """POST the pod with ``dryRun=All``: whatever admission refuses (Pod Security, quotas, policies,
        a missing service account) fails the step here, before anything exists, and not later in the
        Job controller's events; a refusal is a ValueError naming the step and setting."""
        from .kube.errors import ApiError

        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        try:
            self._kube(settings).create(f"{CORE.format(namespace=namespace)}/pods", pod, dry_run=True, retry=True)
        except ApiError as exc:
            step = job["metadata"].get("annotations", {}).get(manifest.ANNOTATION_ZENML_STEP_NAME, name)
            found = preflight.refusal(step, "Pod", pod, _status_of(exc), exc.status or 0)
            raise ValueError("; ".join(f.line() for f in found)) from exc

    def _dry_run_secret(self, settings: K8sStepOperatorSettings, secret: dict) -> None:
        """POST the Secret with ``dryRun=All``: it is sent after ``submit`` has returned, so a denial
        (no ``create`` on secrets) or a refusal must surface here, while nothing exists yet."""
        namespace = secret["metadata"]["namespace"]
        self._kube(settings).create(f"{CORE.format(namespace=namespace)}/secrets", secret, dry_run=True, retry=True)

    def create_job(self, settings: K8sStepOperatorSettings, job: dict) -> dict:
        """POST the Job, running (suspended only for Kueue, which resumes it once admitted); admission's
        verdict on its pod was asked before (:meth:`_admit`, or the preflight)."""
        namespace = job["metadata"]["namespace"]
        return self._kube(settings).create(JOBS.format(namespace=namespace), job, retry=True)

    def create_dependents(self, settings: K8sStepOperatorSettings, created: dict) -> None:
        """What the created Job owns besides its Secret: for several pods the headless Service. Owned
        by the Job, it goes with it whatever happens to this process. If it is refused, the Job is
        deleted again (garbage collection takes the rest) and the refusal raised."""
        kube = self._kube(settings)
        kind = "Service"
        try:
            for request in dependents(created, settings.pod_count):
                kind, path, body = request  # the kind is named if it fails
                kube.create(path, body, retry=True)
        except BaseException as exc:  # interrupted too: the Job goes again
            meta = created["metadata"]
            self._delete(settings, f"{JOBS.format(namespace=meta['namespace'])}/{meta['name']}")
            if isinstance(exc, Exception):
                raise DependentNotCreated(kind, exc) from exc
            raise

    def _senders(self) -> ThreadPoolExecutor:
        """The threads that send what follows each Job, so that ``submit`` returns after one request.
        Their queue is drained before the interpreter exits (``concurrent.futures`` joins them)."""
        with self._senders_lock:
            if self._sender_pool is None:
                self._sender_pool = ThreadPoolExecutor(FOLLOW_UP_SENDERS, thread_name_prefix="k8sso-follow-up")
            return self._sender_pool

    def _rest_readers(self) -> ThreadPoolExecutor:
        """The lasting threads that read the rest of each cut log (:class:`LogFollower`'s ``rest_reader``)."""
        with self._senders_lock:
            if self._rest_reader_pool is None:
                self._rest_reader_pool = ThreadPoolExecutor(LOG_REST_READERS, thread_name_prefix="k8sso-log-rest")
            return self._rest_reader_pool

    def _send_batch(self, batch: Optional[Batch]) -> None:
        """Hand a batch to the senders: a closed one to POST (:meth:`_post_batch`), an open one to linger
        (:meth:`_linger`)."""
        if batch is not None:
            self._senders().submit(self._post_batch if batch.closed else self._linger, batch)

    def _linger(self, batch: Batch) -> None:
        """On a sender thread: wait while steps keep joining the batch (``SecretBatches.linger_left``,
        a fraction of a second at most), then close it and POST it if everyone who joined is in."""
        while (left := self._batches.linger_left(batch)) > 0:
            time.sleep(left)
        ready = self._batches.close(batch)
        if ready is not None:
            self._post_batch(ready)

    def _post_batch(self, batch: Batch) -> None:
        """On a sender thread: POST the batch's Secret, owned by all its Jobs, then each multi-pod step's
        Service. A refusal fails the steps it concerns with the API server's reason (their Jobs are
        deleted again) and wakes whoever waits on them."""
        settings = batch.members[0].sub.settings
        _kind, path, body = batch_secret(batch.name, [m.secret for m in batch.members], [m.job for m in batch.members])
        created = False
        try:
            self._kube(settings).create(path, body, retry=True)
            created = True
            for member in batch.members:
                try:
                    self.create_dependents(member.sub.settings, member.job)
                except DependentNotCreated as exc:
                    self._refuse(member.sub, exc)
        except BaseException as exc:  # interrupted too: no Job may wait for a Secret that never comes
            for member in batch.members:
                try:
                    self._delete(member.sub.settings, member.sub.job_path)
                except Exception as why:  # noqa: BLE001 - the others still go; its pod fails at its start budget
                    logger.warning("Step `%s`: job %s not deleted again (%s)", member.sub.step, member.sub.job, why)
                self._refuse(member.sub, DependentNotCreated("Secret", exc) if isinstance(exc, Exception) else exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            for follow in self._batches.sent(batch, created):
                if follow is batch:  # every step that reads it has read it meanwhile
                    self._delete_secret(batch)
                else:
                    self._send_batch(follow)

    def _refuse(self, sub: Submission, exc: BaseException) -> None:
        sub.refused = f"{exc}, so its job was deleted again"
        logger.error("Step `%s`: %s", sub.step, sub.refused)
        self._watch(sub.namespace).poke(sub.job)

    def _release_env(self, sub: Submission, now: bool) -> None:
        """The step no longer needs its environment: if its Secret's last reader was it, DELETE the
        Secret (``now``: in this thread; else on a sender thread)."""
        sub.env_released = True
        batch = self._batches.release(sub.job)
        if batch is not None:
            if now:
                self._delete_secret(batch)
            else:
                self._senders().submit(self._delete_secret, batch)

    def _delete_secret(self, batch: Batch) -> None:
        first = batch.members[0].sub  # every member reads it: its secret_path is the batch's
        try:
            self._delete(first.settings, first.secret_path)
        except Exception as exc:  # noqa: BLE001 - garbage collection deletes it with its last Job
            logger.warning("Secret %s/%s not deleted yet (%s); it goes with its last Job", first.namespace, batch.name, exc)

    def _delete(self, settings: K8sStepOperatorSettings, path: str, propagation: str = "Background") -> bool:
        """DELETE, ignoring not-found; True when something was deleted."""
        from .kube.errors import NotFound

        try:
            self._kube(settings).delete(path, propagation=propagation)
            return True
        except NotFound:
            return False

    # --------------------------------------------------------------- locate
    def _locate(self, step_run: "StepRunResponse") -> Optional[Submission]:
        """Our record of the step run, or one rebuilt from its Job (found by label)."""
        known = self._known.get(str(step_run.id))
        if known is not None:
            return known
        settings = self._settings(step_run)
        namespace = self._namespace(settings)
        self._watch(namespace)
        items, _ = self._kube(settings).list(
            JOBS.format(namespace=namespace), {"labelSelector": job_selector(str(step_run.id))}
        )
        if not items:
            return None
        sub = from_job(items[0], step_run.name, settings, _now())
        self._known[str(step_run.id)] = sub
        return sub

    def _pods(self, sub: Submission, watch: Optional["PodWatch"] = None) -> List[Tuple[dict, bool]]:
        return (watch or self._watch(sub.namespace)).select(jobs.JOB_NAME_LABEL, sub.job)

    def _events(self, sub: Submission, pods: List[Tuple[dict, bool]], watch: Optional["PodWatch"] = None) -> List[dict]:
        """The events about the step's Job and pods, oldest first."""
        objects = [("Job", sub.job)] + [("Pod", pod["metadata"]["name"]) for pod, _ in pods]
        return (watch or self._watch(sub.namespace)).events_about(objects)

    def _observe(self, sub: Submission, waiting: bool = False) -> pod_status.Verdict:
        """Read the cache once: report what changed, follow new containers' logs, judge the step
        (``waiting``: from :meth:`wait`, which reads a one-pod step's own log itself)."""
        watch = self._watch(sub.namespace)
        pods = self._pods(sub, watch)
        if sub.batched and not sub.env_released and env_read(pods, sub.settings.pod_count):
            self._release_env(sub, now=False)
        due = events_due(sub, pods)
        if due is not None and due <= _now():  # slow to start: the reason may be in the events
            watch.want_events()
        events = self._events(sub, pods, watch)
        for pod, deleted in pods:
            self._report_progress(sub, pod)
            if not deleted:
                self._maybe_follow_logs(sub, pod, waiting)
        self._cut_ended_follows(sub, pods)
        self._report_events(sub, events)
        verdict = judge(sub, pods, events)
        # a failure is told with the warnings about it: list them first (once per namespace)
        if verdict.phase is pod_status.Phase.FAILED and not watch.events_synced and watch.want_events(EVENTS_SYNC_S):
            events = self._events(sub, pods, watch)
            self._report_events(sub, events)
            verdict = judge(sub, pods, events)
        return verdict

    # ---------------------------------------------------------------- status
    def get_status(self, step_run: "StepRunResponse") -> ExecutionStatus:
        """Judge the step's pods (from the shared watch's cache); report progress and follow logs
        as :meth:`wait` does, for pipelines that poll (dynamic ones)."""
        try:
            sub = self._locate(step_run)
            if sub is not None:
                watch = self._watch(sub.namespace)
                if not watch.wait_synced(self._timeout(sub.settings)):
                    raise RuntimeError(watch.last_error)
        except Exception as exc:  # transient: never fail a running step for it
            logger.warning("Step `%s`: cannot read its job right now (%s)", step_run.name, exc)
            return ExecutionStatus.RUNNING
        if sub is None:
            logger.error("Step `%s`: no job found for step run %s", step_run.name, step_run.id)
            return ExecutionStatus.FAILED
        if sub.verdict is not None and sub.verdict.phase.finished:
            return _STATUS[sub.verdict.phase]
        verdict = self._observe(sub)
        if verdict.phase.finished:
            self._finish(step_run, sub, verdict)
        return _STATUS[verdict.phase]

    def wait(self, step_run: "StepRunResponse") -> ExecutionStatus:
        """Block on the shared watch until the step's pods finish; stream their logs meanwhile."""
        sub = self._locate(step_run)
        if sub is None:
            logger.error("Step `%s`: no job found for step run %s", step_run.name, step_run.id)
            return ExecutionStatus.FAILED
        watch = self._watch(sub.namespace)
        if not watch.wait_synced(self._timeout(sub.settings)):
            raise RuntimeError(f"cannot watch pods in namespace {sub.namespace}: {watch.last_error}")

        def finished() -> Optional[object]:
            verdict = self._observe(sub, waiting=True)
            if verdict.phase.finished:
                return verdict
            return _READ_LOG if sub.read_here is not None else None

        def tick() -> Optional[dt.datetime]:
            pods = self._pods(sub)
            due = [next_deadline(sub, pods), None if watch.events_wanted else events_due(sub, pods)]
            return min((d for d in due if d is not None), default=None)

        while True:
            outcome = watch.wait_for(finished, tick=tick, job=sub.job)
            if outcome is not _READ_LOG:
                break
            self._read_log_here(sub, watch)
        if sub.read_here is not None:  # its container started and ended between two looks
            self._read_log_here(sub, watch)
        if not isinstance(outcome, pod_status.Verdict):  # the watch was closed under us
            return self.get_status(step_run)
        self._finish(step_run, sub, outcome)
        return _STATUS[outcome.phase]

    def _read_log_here(self, sub: Submission, watch: "PodWatch") -> None:
        """Follow the step container's log in the waiting thread (no thread of its own) until it ends.
        The kubelet ends the stream up to a second after the container (it looks once a second while the
        file is quiet): the watch cuts it as soon as the pod reports the container ended, or the step is
        over by its pods otherwise (the pod deleted, its node gone), and the rest is read once."""
        follower, sub.read_here = sub.read_here, None
        assert follower is not None

        def cut_if_over() -> None:
            pods = watch.select(jobs.JOB_NAME_LABEL, sub.job)
            self._cut_ended_follows(sub, pods)
            if not follower.cut and judge(sub, pods, self._events(sub, pods, watch)).phase.finished:
                follower.interrupt()

        with watch.nudging(sub.job, cut_if_over):
            follower.run_here()

    @staticmethod
    def _cut_ended_follows(sub: Submission, pods: List[Tuple[dict, bool]]) -> None:
        """Cut the follow of each container its pod reports ended for good; the follow reads the rest once
        (sooner than the kubelet would end the stream)."""
        for pod, deleted in pods:
            if deleted:
                continue
            name = pod["metadata"]["name"]
            for container in pod_status.ended_containers(pod):
                follower = sub.logs.get(f"{name}/{container}")
                if follower is not None:
                    follower.interrupt()

    def _label(self, sub: Submission, pod: dict, container: str = pod_status.MAIN_CONTAINER) -> str:
        """``step`` for one pod, ``step/rank`` for each pod of a multi-pod step; ``:container``
        after it for any container but the step's own."""
        rank = jobs.rank_of(pod)
        label = sub.step if rank is None or sub.settings.pod_count == 1 else f"{sub.step}/{rank}"
        return label if container == pod_status.MAIN_CONTAINER else f"{label}:{container}"

    def _report_progress(self, sub: Submission, pod: dict) -> None:
        name = pod["metadata"]["name"]
        for line in pod_status.progress(sub.seen.get(name), pod):
            logger.info("Step `%s`: pod %s %s", self._label(sub, pod), name, line)
        sub.seen[name] = pod

    def _report_events(self, sub: Submission, events: List[dict]) -> None:
        """Each new warning about the step's Job or pods, once (a repeat counts again)."""
        for event in events:
            key = f"{(event.get('metadata') or {}).get('uid')}/{event.get('count') or (event.get('series') or {}).get('count')}"
            if event.get("type") != "Warning" or key in sub.events_seen:
                continue
            sub.events_seen.add(key)
            involved = event.get("involvedObject") or {}
            logger.warning(
                "Step `%s`: %s %s: %s", sub.step, str(involved.get("kind", "")).lower(), involved.get("name"),
                pod_status.event_text(event),
            )

    def _maybe_follow_logs(self, sub: Submission, pod: dict, waiting: bool = False) -> None:
        """Follow every container of the pod that has started (init containers, sidecars, the step's),
        each in a thread of its own; but a one-pod step's own container, seen by :meth:`wait`, is left to
        it (``sub.read_here``): the waiting thread has nothing else to do."""
        if not sub.settings.stream_logs:
            return
        name = pod["metadata"]["name"]
        for container in pod_status.started_containers(pod):
            key = f"{name}/{container}"
            if key in sub.logs:
                continue
            many = sub.settings.pod_count > 1 or container != pod_status.MAIN_CONTAINER
            prefix = f"[{self._label(sub, pod, container)}] " if sub.settings.log_prefix or many else ""

            def emit(line: str, prefix: str = prefix) -> None:
                sys.stdout.write(f"{prefix}{line}\n")
                sys.stdout.flush()

            from .kube.logs import LogFollower

            follower = sub.logs[key] = LogFollower(
                self.api, sub.namespace, name, container, emit, rest_reader=self._rest_readers()
            )
            if waiting and sub.settings.pod_count == 1 and container == pod_status.MAIN_CONTAINER:
                sub.read_here = follower
            else:
                follower.start()

    def _last_lines(self, sub: Submission, pod_name: str) -> str:
        """The last log lines of the container that failed in ``pod_name`` (followed, else read once)."""
        pod = next((p for p, _ in self._pods(sub) if p["metadata"]["name"] == pod_name), None)
        container = pod_status.failed_container(pod) if pod else None
        if container is None:
            return ""
        follower = sub.logs.get(f"{pod_name}/{container}")
        if follower is not None:
            follower.join(LOG_JOIN_TIMEOUT)
            lines = list(follower.tail)
        else:
            from .kube.logs import TAIL_LINES

            try:
                read = self._kube(sub.settings).log_lines(sub.namespace, pod_name, container=container, tail_lines=TAIL_LINES)
                lines = [line.decode("utf-8", errors="replace") for line in read]
            except Exception as exc:  # noqa: BLE001 - the reason stands without them
                logger.debug("could not read the last lines of %s/%s: %s", pod_name, container, exc)
                return ""
        if not lines:
            return ""
        return f"\nlast lines of container '{container}':\n" + "\n".join(f"  {line}" for line in lines)

    def _finish(self, step_run: "StepRunResponse", sub: Submission, verdict: pod_status.Verdict) -> None:
        """Remember the verdict once; tell the user (and ZenML's step run) why it failed."""
        if sub.verdict is not None:
            return
        sub.verdict = verdict
        where = f"pod {sub.namespace}/{verdict.pod}" if verdict.pod else f"job {sub.namespace}/{sub.job}"
        if verdict.phase is pod_status.Phase.FAILED:
            reason = verdict.reason + (self._last_lines(sub, verdict.pod) if verdict.pod else "")
            logger.error("Step `%s` failed in %s: %s", sub.step, where, reason)
            _record_failure_reason(step_run, f"{where}: {reason}")
        else:
            for follower in sub.logs.values():
                follower.join(LOG_JOIN_TIMEOUT)
            logger.info("Step `%s`: job %s finished", sub.step, sub.job)

    # ------------------------------------------------------- cancel, cleanup
    def cancel(self, step_run: "StepRunResponse") -> None:
        """Delete the Job now: its pods get their grace period, its Secret goes with it."""
        sub = self._locate(step_run)
        if sub is None:
            return
        self._remove(sub, keep_pods=False)
        logger.info("Step `%s`: cancelled, job %s deleted", sub.step, sub.job)

    def cleanup_step_submission(self, step_run: "StepRunResponse") -> None:
        """Apply the clean-up policy; the Secret with ZenML's credentials never outlives the step.

        Kept pods stay until the Job's ``ttlSecondsAfterFinished``: the cluster removes them then.
        """
        sub = self._locate(step_run)
        if sub is None:
            return
        keep = keeps_pods(sub, self._pods(sub))
        self._remove(sub, keep_pods=keep)
        self._watch(sub.namespace).forget(jobs.JOB_NAME_LABEL, sub.job)
        self._known.pop(str(step_run.id), None)

    def _remove(self, sub: Submission, keep_pods: bool) -> None:
        """Once what follows the Job has been sent: release the step's Secret (deleted if it was its last
        reader), then DELETE the Job unless its pods stay (:func:`submission.removal_path`: a step this
        process did not submit loses its Secret that way); stop following the logs."""
        if sub.follow_up is not None:
            wait_for_futures([sub.follow_up])
        if sub.batched:  # its Secret goes once no step of its burst needs it (perhaps now)
            if not sub.env_released:
                self._release_env(sub, now=True)
            if keep_pods:
                self._stop_following(sub)
                return
        self._delete(sub.settings, removal_path(sub, keep_pods))
        self._stop_following(sub)

    @staticmethod
    def _stop_following(sub: Submission) -> None:
        for follower in sub.logs.values():
            follower.stop()


class DependentNotCreated(RuntimeError):
    """An object the Job owns (its Secret, its Service) was not created; the Job was deleted again."""

    def __init__(self, kind: str, cause: Exception) -> None:
        from kubernetes.client.exceptions import ApiException

        self.kind = kind
        if isinstance(cause, ApiException):  # the API server answered
            why = f"the API server refused the step's {kind}: {getattr(cause, 'message', '') or cause.reason or cause}"
        else:
            why = f"the step's {kind} could not be sent to the API server ({type(cause).__name__}: {cause})"
        super().__init__(why)


def _status_of(exc: Any) -> Dict[str, Any]:
    """The ``Status`` object of a refusal (``ApiError.server_status``); a body that is not one stands as
    its message."""
    return exc.server_status or ({"message": str(exc.reason or exc.body)} if exc.body else {})


def _readable_denial(exc: Any, method: str, path: str, query: Optional[Dict[str, Any]]) -> Optional[PermissionError]:
    """An RBAC denial as a PermissionError naming the verb, resource and namespace to grant."""
    access = rbac.request_access(method, path, query)
    resource = access.resource + (f"/{access.subresource}" if access.subresource else "")
    text = exc.rbac_text(access.verb, resource, access.namespace)
    return PermissionError(text) if text else None


def _active_user() -> User:
    from zenml.client import Client
    from zenml.constants import LINUX_GID_CLAIM_KEY, LINUX_UID_CLAIM_KEY

    user = Client().active_user
    claims = getattr(user, "oidc_claims", None) or {}
    return User(str(user.id), claims.get(LINUX_UID_CLAIM_KEY), claims.get(LINUX_GID_CLAIM_KEY))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


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


def resolve_pvolumes(info: "StepRunInfo", pvolumes: Dict[str, Any]) -> List[mounts.Mount]:
    """The mounts of ``pvolumes``: a named step input's value (a PVC name or a volume step's manifest),
    else a PVC name or a volume source (see :func:`mounts.pvolume_mounts`)."""
    inputs = info.step_run.regular_inputs if pvolumes else {}
    parameters = info.config.parameters or {}

    def value_of(name: str) -> Any:
        if name in inputs:
            return inputs[name][0].load()
        if name in parameters:
            return parameters[name]
        raise KeyError(name)

    return mounts.pvolume_mounts(pvolumes, value_of)


def _has_cleanup_hook(info: "StepRunInfo") -> bool:
    from .steps.run_end import names_cleanup_hook

    config = info.config
    return names_cleanup_hook([config.success_hook_source, config.failure_hook_source, config.end_hook_source])


def _record_run_claim(info: "StepRunInfo", claim: dict, path: str, hooked: bool) -> None:
    """Record the run's claim on this step run, where ``cleanup_run_resources`` looks at the run's end."""
    from zenml.client import Client
    from zenml.enums import MetadataResourceTypes
    from zenml.models import RunMetadataResource

    from .manifest import RUN_ID_LABEL
    from .steps.run_end import WORKSPACES_KEY

    meta = claim.get("metadata") or {}
    entry = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": meta.get("name"),
        "namespace": meta.get("namespace"), "uid": meta.get("uid"), "path": path, "cleanup": "on-run-end",
        "cluster": {"kubeconfig": None, "context": None},
    }
    try:
        Client().create_run_metadata(
            metadata={WORKSPACES_KEY: [entry]},
            resources=[RunMetadataResource(id=info.step_run_id, type=MetadataResourceTypes.STEP_RUN)],
        )
    except Exception as exc:  # noqa: BLE001 - the claim still carries the run's label
        logger.warning("could not record claim %s on the step run (%s); delete it by label %s", path, exc, RUN_ID_LABEL)
    if not hooked:
        logger.warning(
            "claim %s is made per run but the pipeline has no cleanup_run_resources hook, so it will outlive the "
            "run; add @pipeline(on_success=cleanup_run_resources, on_failure=cleanup_run_resources) or delete "
            "it by label %s", path, RUN_ID_LABEL,
        )


def local_environment() -> Dict[str, str]:
    """With ``local=True`` the pods share this machine: point them at the same ZenML config
    directory, so local stores (SQLite, local artifact store) resolve to the same paths."""
    from zenml.config.global_config import GlobalConfiguration

    return {"ZENML_CONFIG_PATH": GlobalConfiguration().config_directory}


def active_component(component_type: StackComponentType) -> Optional[Any]:
    """The active stack's component of ``component_type``, built alone (None if the stack has none).
    ``Client().active_stack`` would build every component and import each one's modules (a profiled
    first submit: 1.46 s of CPU, most of it importing ZenML's deployer and REST store)."""
    from zenml.client import Client
    from zenml.stack import StackComponent

    models = Client().active_stack_model.components.get(component_type) or []
    return StackComponent.from_model(models[0]) if models else None


def local_paths() -> list[str]:
    """With ``local=True``: the host directories the step pod mounts at the same paths — ZenML's
    config directory (its SQLite store and default artifact stores) and the active stack's local
    artifact store when it lies elsewhere."""
    from zenml.config.global_config import GlobalConfiguration

    config_dir = os.path.realpath(GlobalConfiguration().config_directory)
    paths = [config_dir]
    store = cast(Any, active_component(StackComponentType.ARTIFACT_STORE))  # every stack has one
    if store.config.is_local:
        root = os.path.realpath(store.path)
        if not (root + os.sep).startswith(config_dir + os.sep):
            paths.append(root)
    return paths


def _refuse_unknown_settings(settings: K8sStepOperatorSettings) -> None:
    """A misspelled setting would be silently ignored (ZenML keeps extras); refuse it by name."""
    problem = unknown_settings(settings, list(K8sStepOperatorConfig.model_fields))
    if problem:
        raise ValueError(problem)

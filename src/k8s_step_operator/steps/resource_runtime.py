"""Run a resource step: resolve the kind, perform the action, wait on conditions, build outputs.

This is the shell around :mod:`resource_spec` (pure). Every API call goes
through :class:`Executor`: the verbs of :mod:`k8s_step_operator.kube.client`
(transient failures of idempotent requests retried), its typed errors turned
into :class:`~k8s_step_operator.steps.errors.ResourceStepError` with a message
naming the object — a 403 says which verb on which resource in which
namespace is missing, and for whom.

:func:`run_resource` is what the ZenML step calls; tests call it directly.
"""

from __future__ import annotations

import copy
import logging
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..kube import retry
from ..kube.client import Client
from ..kube.errors import ApiError, Conflict, NotFound, UnsupportedMediaType
from . import discovery
from .actions import ACTIONS
from .bindings import bind_resource_inputs
from .cluster import Cluster, connect
from .conditions import Condition, parse_conditions
from .discovery import ApiResource
from .entrypoints import Outputs
from .errors import ResourceStepError, WaitTimeout, translate_api_error
from .jsonpath import extract
from .object_watch import WaitTarget, wait_for_conditions, wait_until_deleted
from .pod_logs import follow_started_pods
from .resource_list import ResourceListSpec
from .resource_spec import (
    CLEANUP_LABEL,
    FIELD_MANAGER,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    RUN_ID_LABEL,
    Cleanup,
    MergeStrategy,
    ResourceSpec,
    ResourceSpecError,
    validate_object_name,
)

__all__ = ["Executor", "RunInfo", "StepResult", "run_resource", "run_resource_list"]

log = logging.getLogger(__name__)

_RETRY = retry.DEFAULT
_REQUEST_TIMEOUT = 30.0


@dataclass
class RunInfo:
    """The pipeline run a step belongs to (labels, names, and where to record created objects)."""

    run_id: str | None = None
    run_name: str | None = None
    step_name: str | None = None
    record: Callable[[dict[str, Any]], None] | None = None

    @classmethod
    def from_step_context(cls) -> RunInfo:
        """Read the current ZenML step context; empty outside a step."""
        try:
            from zenml import get_step_context

            ctx = get_step_context()
        except Exception:  # noqa: BLE001 - not inside a ZenML step
            return cls()
        from .cleanup import record_created

        return cls(
            run_id=str(ctx.pipeline_run.id),
            run_name=ctx.pipeline_run.name,
            step_name=ctx.step_run.name,
            record=record_created,
        )


@dataclass
class StepResult:
    """What a step returns: the object's name, its manifest and the named outputs."""

    name: str
    manifest: dict[str, Any] | None
    outputs: dict[str, Any] = field(default_factory=dict)

    def values(self, names: tuple[str, ...]) -> Any:
        """The step's return value for ``names`` (one value, or a tuple in order)."""
        table = {"name": self.name, "manifest": self.manifest, **self.outputs}
        result = tuple(table[n] for n in names)
        return result[0] if len(result) == 1 else result


def clean_manifest(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as ``kubectl get -o json`` shows it (no managedFields)."""
    result = copy.deepcopy(obj)
    (result.get("metadata") or {}).pop("managedFields", None)
    return result


def describe(res: ApiResource, namespace: str | None, name: str | None) -> str:
    """``Kind ns/name`` or ``Kind name`` for messages."""
    shown = name or "(generated name)"
    return f"{res.kind} {namespace}/{shown}" if res.namespaced else f"{res.kind} {shown}"


class Executor:
    """The kube client's verbs for one step: retries, errors translated into step errors, discovery."""

    def __init__(self, cluster: Cluster, run: RunInfo | None = None) -> None:
        self.cluster = cluster
        self.run = run or RunInfo()
        self.client = Client(cluster.api, timeout=_REQUEST_TIMEOUT, policy=_RETRY)

    @staticmethod
    def failed(exc: ApiError, verb: str, res: ApiResource, namespace: str | None, what: str) -> ResourceStepError:
        """The step error for a refused ``verb`` on ``res`` (a 403 names the missing permission)."""
        return translate_api_error(exc, verb, res.display, namespace if res.namespaced else None, what)

    # ------------------------------------------------------------------ basics
    def resolve(self, api_version: str, kind: str, field_name: str = "k8s_resource.kind") -> ApiResource:
        """Plural and scope of ``kind`` (the official client's discovery, see :mod:`.discovery`)."""
        return discovery.resolve(self.cluster.api, api_version, kind, field_name)

    def read(self, res: ApiResource, namespace: str | None, name: str) -> dict[str, Any] | None:
        """GET one object; None when it does not exist."""
        try:
            return self.client.get(res.object_path(namespace, name))
        except NotFound:
            return None
        except ApiError as exc:
            raise self.failed(exc, "get", res, namespace, describe(res, namespace, name)) from None

    def list_items(self, res: ApiResource, namespace: str | None, what: str) -> list[dict[str, Any]]:
        """LIST the kind's objects (in ``namespace`` when namespaced)."""
        try:
            return self.client.list(res.collection_path(namespace))[0]
        except ApiError as exc:
            raise self.failed(exc, "list", res, namespace, what) from None

    # ----------------------------------------------------------------- actions
    def get(self, res: ApiResource, namespace: str | None, name: str) -> dict[str, Any]:
        """GET the object; a clear error when it does not exist."""
        obj = self.read(res, namespace, name)
        if obj is None:
            raise ResourceStepError(f"{describe(res, namespace, name)} not found")
        return obj

    def create(self, res: ApiResource, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """POST, retried after a refusal (429, 5xx); a retried create that finds its own object (same run-id label)
        accepts it."""
        name = (body.get("metadata") or {}).get("name")
        what = describe(res, namespace, name)
        attempts = 0

        def post() -> dict[str, Any]:
            nonlocal attempts
            attempts += 1
            try:
                return self.client.create(res.collection_path(namespace), body)
            except Conflict:
                if attempts > 1 and name:
                    existing = self.get(res, namespace, name)
                    labels = (existing.get("metadata") or {}).get("labels") or {}
                    ours = ((body.get("metadata") or {}).get("labels") or {}).get(RUN_ID_LABEL)
                    if labels.get(RUN_ID_LABEL) and labels.get(RUN_ID_LABEL) == ours:
                        return existing
                raise

        try:
            # a refusal (429, 5xx) left nothing behind; after a dropped connection the object may exist
            return retry.run(post, _RETRY, lambda exc: isinstance(exc, ApiError) and retry.is_retryable(exc))
        except Conflict:
            raise ResourceStepError(f"{what} already exists; use action='apply' to update it, or another name") from None
        except ApiError as exc:
            raise self.failed(exc, "create", res, namespace, what) from None

    def apply(self, res: ApiResource, namespace: str | None, body: dict[str, Any], force: bool) -> dict[str, Any]:
        """Server-side apply with field manager ``k8s-step-operator``."""
        name = body["metadata"]["name"]
        what = describe(res, namespace, name)
        try:
            return self.client.apply(res.object_path(namespace, name), body, field_manager=FIELD_MANAGER, force=force)
        except Conflict as exc:
            raise ResourceStepError(
                f"{what}: server-side apply conflicts with other field managers; set force=True to take "
                f"the fields over. Server said: {exc.message}"
            ) from None
        except ApiError as exc:
            raise self.failed(exc, "patch", res, namespace, what) from None

    def replace(self, res: ApiResource, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """PUT with the current resourceVersion (re-read on a conflict, up to 3 times)."""
        name = body["metadata"]["name"]
        what = describe(res, namespace, name)
        for attempt in range(3):
            current = self.read(res, namespace, name)
            if current is None:
                raise ResourceStepError(f"{what} not found; replace needs an existing object (use create or apply)")
            body.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                return self.client.replace(res.object_path(namespace, name), body)
            except ApiError as exc:
                if isinstance(exc, Conflict) and attempt < 2:
                    continue
                raise self.failed(exc, "update", res, namespace, what) from None
        raise AssertionError("unreachable")

    def is_custom_resource(self, res: ApiResource) -> bool | None:
        """Whether a CRD serves ``res`` (True/False), None when that cannot be read."""
        if not res.group:
            return False
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{res.plural}.{res.group}"
        try:
            self.client.get(path, retry=False)
            return True
        except NotFound:
            return False
        except ApiError:
            return None

    def patch(
        self, res: ApiResource, namespace: str | None, name: str, body: Any, strategy: str
    ) -> dict[str, Any]:
        """PATCH with the strategy's content type; strategic merge is refused for custom resources."""
        what = describe(res, namespace, name)
        if strategy == MergeStrategy.STRATEGIC.value and self.is_custom_resource(res):
            raise ResourceStepError(
                f"merge_strategy: 'strategic' is not supported for the custom resource {res.kind} "
                f"({res.display}); allowed for custom resources: merge, json"
            )
        try:
            return self.client.patch(res.object_path(namespace, name), body, flavour=strategy)
        except NotFound:
            raise ResourceStepError(f"{what} not found; patch needs an existing object") from None
        except UnsupportedMediaType:
            raise ResourceStepError(
                f"merge_strategy: {strategy!r} is not supported for {res.kind} ({res.display}) by this server; "
                "allowed for custom resources: merge, json"
            ) from None
        except ApiError as exc:
            raise self.failed(exc, "patch", res, namespace, what) from None

    def delete(
        self, res: ApiResource, namespace: str | None, name: str, propagation: str, uid: str | None = None
    ) -> dict[str, Any] | None:
        """DELETE (not-found ignored → None); ``uid`` adds a precondition (another object of the name → None)."""
        what = describe(res, namespace, name)
        try:
            return self.client.delete(res.object_path(namespace, name), propagation=propagation, uid=uid)
        except NotFound:
            return None
        except ApiError as exc:
            if uid and isinstance(exc, Conflict):
                log.info("%s was replaced by another object of the same name; not deleting it", what)
                return None
            raise self.failed(exc, "delete", res, namespace, what) from None


def _prepare_body(
    spec: ResourceSpec, res: ApiResource, name: str | None, namespace: str | None, run: RunInfo
) -> dict[str, Any]:
    body = copy.deepcopy(spec.body) if isinstance(spec.body, dict) else {}
    body["apiVersion"] = spec.api_version
    body["kind"] = spec.kind
    metadata = body.setdefault("metadata", {})
    if name:
        metadata["name"] = name
        metadata.pop("generateName", None)
    if res.namespaced:
        metadata["namespace"] = namespace
    else:
        metadata.pop("namespace", None)
    if ACTIONS[spec.action].creates:
        labels = metadata.setdefault("labels", {})
        labels.setdefault(MANAGED_BY_LABEL, MANAGED_BY_VALUE)
        if run.run_id:
            labels[RUN_ID_LABEL] = run.run_id
        if spec.cleanup != Cleanup.NEVER.value:
            labels[CLEANUP_LABEL] = spec.cleanup
    return body


def _add_owner(executor: Executor, spec: ResourceSpec, res: ApiResource, namespace: str | None, body: dict) -> None:
    owner = spec.owner
    assert owner is not None
    owner_res = executor.resolve(owner["apiVersion"], owner["kind"], "set_owner_reference.kind")
    if owner_res.namespaced and not res.namespaced:
        raise ResourceSpecError(
            f"set_owner_reference: a cluster-scoped {res.kind} cannot be owned by the namespaced "
            f"{owner_res.kind}; allowed owners: cluster-scoped kinds"
        )
    owner_obj = executor.get(owner_res, namespace, owner["name"])
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["name"],
        "uid": owner_obj["metadata"]["uid"],
    }
    if spec.block_owner_deletion:
        ref["blockOwnerDeletion"] = True
    refs = body["metadata"].setdefault("ownerReferences", [])
    if not any(r.get("uid") == ref["uid"] for r in refs):
        refs.append(ref)


def attribute_values(obj: dict[str, Any], attribute_outputs: Mapping[str, str]) -> dict[str, Any]:
    """Evaluate each JSONPath; a missing field gives ``""`` (as kubectl/Argo) and a warning."""
    values: dict[str, Any] = {}
    for key, expr in attribute_outputs.items():
        value = extract(obj, expr, f"attribute_outputs[{key!r}]", default=None)
        if value is None:
            log.warning("attribute_outputs[%r]: JSONPath %r matched nothing; the output is ''", key, expr)
            value = ""
        values[key] = value
    return values


def record(executor: Executor, spec: ResourceSpec, res: ApiResource, namespace: str | None, obj: dict) -> None:
    """Tell the run what this step created (for the clean-up hook)."""
    if executor.run.record is None:
        return
    meta = obj.get("metadata") or {}
    executor.run.record(
        {
            "apiVersion": spec.api_version,
            "kind": spec.kind,
            "name": meta.get("name"),
            "namespace": namespace if res.namespaced else None,
            "uid": meta.get("uid"),
            "path": res.object_path(namespace, meta["name"]),
            "cleanup": spec.cleanup,
            "cluster": executor.cluster.recorded(),
        }
    )


# ----------------------------------------------------------------- the actions
# Each action of the table (.actions.ACTIONS) performed: (executor, spec, kind, namespace, name, the object to
# send when the action writes one) -> the object afterwards (None when it is gone).
Perform = Callable[[Executor, ResourceSpec, ApiResource, str | None, str | None, Any], "dict[str, Any] | None"]


def _get(ex: Executor, spec: ResourceSpec, res: ApiResource, ns: str | None, name: str | None, _: Any) -> dict:
    assert name is not None
    return ex.get(res, ns, name)


def _create(ex: Executor, spec: ResourceSpec, res: ApiResource, ns: str | None, _n: str | None, body: Any) -> dict:
    return ex.create(res, ns, body)


def _apply(ex: Executor, spec: ResourceSpec, res: ApiResource, ns: str | None, _n: str | None, body: Any) -> dict:
    return ex.apply(res, ns, body, spec.force)


def _replace(ex: Executor, spec: ResourceSpec, res: ApiResource, ns: str | None, _n: str | None, body: Any) -> dict:
    return ex.replace(res, ns, body)


def _patch(ex: Executor, spec: ResourceSpec, res: ApiResource, ns: str | None, name: str | None, _: Any) -> dict:
    assert name is not None and spec.merge_strategy is not None
    patch_body: Any = spec.body
    if spec.merge_strategy != MergeStrategy.JSON.value:
        patch_body = copy.deepcopy(spec.body)
        patch_body.get("metadata", {}).pop("namespace", None)
    return ex.patch(res, ns, name, patch_body, spec.merge_strategy)


def _delete(ex: Executor, spec: ResourceSpec, res: ApiResource, ns: str | None, name: str | None, _: Any) -> None:
    assert name is not None
    what = describe(res, ns, name)
    deleted = ex.delete(res, ns, name, spec.propagation_policy)
    if deleted is None:
        log.info("%s was already gone", what)
        return
    log.info("deleted %s (propagationPolicy=%s)", what, spec.propagation_policy)
    if spec.wait_for_deletion:
        target = WaitTarget(res.collection_path(ns), name, what, res.display, ns)
        wait_until_deleted(ex.cluster.api, target, spec.timeout, deleted)


PERFORM: dict[str, Perform] = {
    "get": _get, "create": _create, "apply": _apply, "replace": _replace, "patch": _patch, "delete": _delete
}


def run_resource(
    spec: ResourceSpec | Mapping[str, Any],
    *,
    cluster: Cluster | None = None,
    run: RunInfo | None = None,
    resource_name: str | None = None,
    events_fail_fast: bool = True,
    inputs: Mapping[str, Any] | None = None,
    conditions: tuple[Condition | None, Condition | None] | None = None,
) -> StepResult:
    """Perform a resource step; see the module docstring.

    ``inputs``: values for the manifest's ``{{inputs.NAME}}`` placeholders. ``conditions``:
    (success, failure) judged instead of the spec's condition texts (custom tasks).
    """
    if not isinstance(spec, ResourceSpec):
        spec = ResourceSpec.from_dict(spec)
    spec = bind_resource_inputs(spec, inputs or {})
    if resource_name is not None:
        validate_object_name(resource_name, "resource_name")
    name = resource_name or spec.name
    if not name and not spec.generate_name:
        raise ResourceSpecError(
            "resource_name: the step has no object name; give metadata.name, resource_name=..., "
            "or bind the step's resource_name input"
        )
    if conditions is None:
        conditions = parse_conditions(spec.success_condition, spec.failure_condition)
    success, failure = conditions
    cluster = cluster or connect(spec.namespace, kubeconfig=spec.kubeconfig, context=spec.context)
    run = run or RunInfo.from_step_context()
    executor = Executor(cluster, run)
    res = executor.resolve(spec.api_version, spec.kind)
    namespace = (spec.namespace or cluster.namespace) if res.namespaced else None
    if spec.namespace and not res.namespaced:
        log.info("%s is cluster-scoped; ignoring namespace %r", res.kind, spec.namespace)
    action = ACTIONS[spec.action]
    body = None
    if action.writes_object:
        body = _prepare_body(spec, res, name, namespace, run)
        if spec.owner is not None:
            _add_owner(executor, spec, res, namespace, body)
    obj = PERFORM[action.name](executor, spec, res, namespace, name, body)
    if not action.waits:  # the object is gone
        assert name is not None
        return StepResult(name=name, manifest=None)
    assert obj is not None
    if action.creates:
        record(executor, spec, res, namespace, obj)
    name = obj["metadata"]["name"]
    what = describe(res, namespace, name)
    log.info("%s: %s done", what, action.name)

    if success is not None or failure is not None:
        target = WaitTarget(res.collection_path(namespace), name, what, res.display, namespace)
        events_path = f"/api/v1/namespaces/{namespace}/events" if namespace else "/api/v1/events"
        last_reason: list[str] = [""]

        def progress(_obj: dict[str, Any], reason: str) -> None:
            if reason != last_reason[0]:
                last_reason[0] = reason
                log.info("%s: %s", what, reason)

        logs = None
        if spec.stream_logs and action.creates:
            logs = follow_started_pods(cluster.api, obj, namespace, run.step_name or name)
        try:
            obj, reason = wait_for_conditions(
                cluster.api,
                target,
                obj,
                success,
                failure,
                spec.timeout,
                fail_on_events=spec.fail_on_events if events_fail_fast else (),
                events_path=events_path,
                on_progress=progress,
            )
        finally:
            if logs is not None:  # to each container's end, unless the wait timed out (they may run on)
                logs.close(join=sys.exc_info()[0] is not WaitTimeout)
        if reason != last_reason[0]:
            log.info("%s: %s", what, reason)
    manifest = clean_manifest(obj)
    outputs = attribute_values(manifest, spec.attribute_outputs)
    result_name = outputs.pop("name", name)
    result_manifest = outputs.pop("manifest", manifest)
    return StepResult(name=result_name, manifest=result_manifest, outputs=outputs)


def run_resource_list(
    spec: ResourceListSpec | Mapping[str, Any],
    *,
    cluster: Cluster | None = None,
    run: RunInfo | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> Outputs:
    """Perform a resource step on each of its objects in order; each output is a list, one item per object."""
    if not isinstance(spec, ResourceListSpec):
        spec = ResourceListSpec.from_dict(spec)
    specs = spec.specs()
    first = specs[0]
    cluster = cluster or connect(first.namespace, kubeconfig=first.kubeconfig, context=first.context)
    run = run or RunInfo.from_step_context()
    results = [run_resource(item, cluster=cluster, run=run, inputs=inputs) for item in specs]
    table = {"name": [r.name for r in results], "manifest": [r.manifest for r in results]}
    for key in spec.output_names[2:]:
        table[key] = [r.outputs[key] for r in results]
    return Outputs(table)

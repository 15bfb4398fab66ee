"""Run-scoped clean-up: record what steps create, delete it when the run ends.

Every object a resource/volume/snapshot step creates is labelled
``app.kubernetes.io/managed-by=k8s-step-operator`` and
``k8s-step-operator.zenml.io/run-id=<run id>``, and recorded in the step run's
metadata under :data:`CREATED_KEY` (path, uid, clean-up policy). Attach the
hook to the pipeline::

    from k8s_step_operator.steps import cleanup_run_resources

    @pipeline(on_success=cleanup_run_resources, on_failure=cleanup_run_resources)
    def my_pipeline(): ...

ZenML runs a static pipeline's hooks after every step; this hook acts only
after the last one (see :mod:`run_end`) and deletes the objects whose policy
says so (``on-run-end``; ``on-success`` only when no step failed). Deletes
use ``propagationPolicy=Background`` and a uid precondition and never wait, so
a PVC still mounted by a pod (``kubernetes.io/pvc-protection``) does not hang
the run: it is removed when the pod lets go. Clean-up problems are logged,
never raised. :func:`cleanup_run` does the same by hand for a finished run.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping, Optional

from ..kube.client import Client
from ..kube.errors import ApiError, Conflict, NotFound
from ..manifest import RUN_ID_LABEL
from .cluster import Cluster, connect
from .run_end import (
    CREATED_KEY,
    HOOK_NAME,
    RECORD_KEYS,
    entries_to_delete,
    names_cleanup_hook,
    run_is_over,
    run_succeeded,
)

__all__ = ["CREATED_KEY", "cleanup_run", "cleanup_run_resources", "delete_recorded", "record_created"]

log = logging.getLogger(__name__)


def record_created(entry: dict[str, Any]) -> None:
    """Record a created object on the current step run (called inside a step)."""
    from zenml import log_metadata

    log_metadata(metadata={CREATED_KEY: [entry]})
    if entry.get("cleanup") not in (None, "never"):
        _warn_without_hook(entry)


def _warn_without_hook(entry: Mapping[str, Any]) -> None:
    try:
        from zenml import get_step_context

        config = get_step_context().step_run.config
        sources = [config.success_hook_source, config.failure_hook_source, config.end_hook_source]
    except Exception:  # noqa: BLE001 - best effort
        return
    if not names_cleanup_hook(sources):
        log.warning(
            "%s %s has cleanup=%r but the pipeline has no %s hook, so it will outlive the run; add "
            "@pipeline(on_success=%s, on_failure=%s) or delete it by label %s",
            entry.get("kind"),
            entry.get("name"),
            entry.get("cleanup"),
            HOOK_NAME,
            HOOK_NAME,
            HOOK_NAME,
            RUN_ID_LABEL,
        )


def recorded_entries(steps: Iterable[Any]) -> list[dict[str, Any]]:
    """All entries recorded by the given step runs."""
    entries: list[dict[str, Any]] = []
    for step in steps:
        for key in RECORD_KEYS:
            value = (getattr(step, "run_metadata", None) or {}).get(key)
            if isinstance(value, list):
                entries.extend(e for e in value if isinstance(e, dict) and e.get("path"))
    return entries


def delete_recorded(entries: Iterable[Mapping[str, Any]], cluster: Optional[Cluster] = None) -> list[str]:
    """Delete recorded objects (Background, uid precondition, not-found ignored); returns problems."""
    problems: list[str] = []
    clusters: dict[tuple[Any, Any], Cluster] = {}
    for entry in entries:
        what = f"{entry.get('kind')} {str(entry.get('namespace')) + '/' if entry.get('namespace') else ''}{entry.get('name')}"
        try:
            target = cluster
            if target is None:
                recorded = entry.get("cluster") or {}
                key = (recorded.get("kubeconfig"), recorded.get("context"))
                if key not in clusters:
                    clusters[key] = connect(kubeconfig=key[0], context=key[1])
                target = clusters[key]
            Client(target.api).delete(entry["path"], propagation="Background", uid=entry.get("uid") or None)
            if entry.get("kind") == "PersistentVolumeClaim":
                log.info("clean-up: deleting %s (stays Terminating while a pod still mounts it)", what)
            else:
                log.info("clean-up: deleted %s", what)
        except NotFound:
            log.info("clean-up: %s was already gone", what)
        except Conflict:
            log.info("clean-up: %s was replaced by another object of that name; left alone", what)
        except ApiError as exc:
            problems.append(f"{what}: HTTP {exc.status}: {exc.message}")
        except Exception as exc:  # noqa: BLE001 - clean-up never fails the run
            problems.append(f"{what}: {exc}")
    for problem in problems:
        log.error("clean-up: could not delete %s", problem)
    return problems


def _run_facts(run: Any) -> tuple[dict[str, Optional[str]], dict[str, list[str]], str]:
    """Step statuses (None: no run yet), upstream steps and execution mode of a pipeline run."""
    snapshot = run.snapshot
    statuses: dict[str, Optional[str]] = {name: None for name in snapshot.step_configurations}
    upstream = {name: list(step.spec.upstream_steps) for name, step in snapshot.step_configurations.items()}
    for name, step in run.steps.items():
        statuses[name] = str(getattr(step.status, "value", step.status))
    mode = snapshot.pipeline_configuration.execution_mode
    return statuses, upstream, str(getattr(mode, "value", mode) or "continue_on_failure")


def cleanup_run_resources(exception: Any = None) -> None:
    """Pipeline hook: after the run's last step, delete what its steps created with clean-up on.

    Use as ``@pipeline(on_success=cleanup_run_resources, on_failure=cleanup_run_resources)``
    (or ``on_end=``). ``exception`` is the step's exception on failure (typed ``Any``
    because ZenML validates a success hook's signature without arbitrary types). Never raises.
    """
    try:
        from zenml import get_step_context
        from zenml.client import Client

        ctx = get_step_context()
    except Exception:  # noqa: BLE001
        log.warning("%s runs as a step hook (on_success/on_failure/on_end); use cleanup_run(run) elsewhere", HOOK_NAME)
        return
    try:
        run = Client().get_pipeline_run(ctx.pipeline_run.id)
        statuses, upstream, mode = _run_facts(run)
        current = ctx.step_run.name
        failed = exception is not None
        if not run_is_over(current, failed, statuses, upstream, mode):
            log.debug("%s: run %s is not over after step %s", HOOK_NAME, run.name, current)
            return
        succeeded = run_succeeded(current, failed, statuses)
        entries = entries_to_delete(recorded_entries(run.steps.values()), succeeded)
        if entries:
            log.info("clean-up: run %s ended (%s); deleting %d object(s)", run.name,
                     "succeeded" if succeeded else "failed", len(entries))
            delete_recorded(entries)
    except Exception as exc:  # noqa: BLE001 - a hook must not fail the run
        log.error("clean-up of run %s failed: %s", getattr(ctx.pipeline_run, "name", "?"), exc)


def cleanup_run(run_name_or_id: str, *, include_kept: bool = False, succeeded: Optional[bool] = None) -> list[dict]:
    """Delete what a run's steps created: ``on-run-end`` always, ``on-success`` if the run succeeded.

    ``include_kept`` also deletes objects created with ``cleanup="never"``.
    Returns the entries it tried to delete.
    """
    from zenml.client import Client

    run = Client().get_pipeline_run(run_name_or_id)
    entries = recorded_entries(run.steps.values())
    if succeeded is None:
        succeeded = str(getattr(run.status, "value", run.status)) == "completed"
    chosen = [dict(e) for e in entries] if include_kept else [dict(e) for e in entries_to_delete(entries, succeeded)]
    delete_recorded(chosen)
    return chosen

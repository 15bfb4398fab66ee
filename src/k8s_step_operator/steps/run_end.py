"""When is a pipeline run over, and what does its clean-up delete? (pure)

ZenML propagates a static pipeline's ``on_success``/``on_failure`` hooks to
every step, so the clean-up hook runs after each step and must act only after
the *last* one. :func:`run_is_over` decides that from the step statuses: the
run is over when, counting the current step as finished, no other step is
running or can still start. A step without a run yet can still start unless a
failure stops the run (``fail_fast``/``stop_on_failure``) or, with
``continue_on_failure``, one of its upstream steps failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["FINISHED", "FAILED", "entries_to_delete", "names_cleanup_hook", "run_is_over", "run_succeeded"]

FINISHED = frozenset({"failed", "completed", "cached", "skipped", "retried", "stopped", "cancelled"})
FAILED = frozenset({"failed", "cancelled", "stopped"})
_STOPPING_MODES = frozenset({"fail_fast", "stop_on_failure"})
HOOK_NAME = "cleanup_run_resources"
# step run metadata keys holding what to delete at the run's end: objects a step created itself, and
# the per-run workspace claims the step operator created when it submitted the step
CREATED_KEY = "k8s_step_operator_created"
WORKSPACES_KEY = "k8s_step_operator_workspace_claims"
RECORD_KEYS = (CREATED_KEY, WORKSPACES_KEY)


def names_cleanup_hook(sources: Iterable[Any]) -> bool:
    """Whether one of a step's hook sources is :data:`HOOK_NAME`."""
    return any(s is not None and HOOK_NAME in str(getattr(s, "import_path", s)) for s in sources)


def _upstream_closure(step: str, upstream: Mapping[str, Sequence[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(upstream.get(step, ()))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(upstream.get(name, ()))
    return seen


def run_is_over(
    current: str,
    current_failed: bool,
    statuses: Mapping[str, str | None],
    upstream: Mapping[str, Sequence[str]],
    execution_mode: str,
) -> bool:
    """Whether no step other than ``current`` is running or can still start.

    ``statuses``: every step of the pipeline → its run's status value (e.g.
    ``"running"``), or None when it has no run yet.
    """
    failed = {name for name, status in statuses.items() if status in FAILED and name != current}
    if current_failed:
        failed.add(current)
    for name, status in statuses.items():
        if name == current or status in FINISHED:
            continue
        if status is not None:
            return False
        if failed and execution_mode in _STOPPING_MODES:
            continue
        if _upstream_closure(name, upstream) & (failed | {n for n, s in statuses.items() if s == "skipped"}):
            continue
        return False
    return True


def run_succeeded(current: str, current_failed: bool, statuses: Mapping[str, str | None]) -> bool:
    """No step failed (the current one included)."""
    if current_failed:
        return False
    return not any(status in FAILED for name, status in statuses.items() if name != current)


def entries_to_delete(entries: Iterable[Mapping[str, Any]], succeeded: bool) -> list[Mapping[str, Any]]:
    """Recorded objects whose clean-up policy applies: ``on-run-end`` always, ``on-success`` on success."""
    chosen = []
    for entry in entries:
        policy = entry.get("cleanup")
        if policy == "on-run-end" or (policy == "on-success" and succeeded):
            chosen.append(entry)
    return chosen

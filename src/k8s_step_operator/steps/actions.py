"""Resource-step actions as one table (pure): what each sends, which permissions it needs, what it allows.

Read by the spec's validation (:mod:`.resource_spec`: the options an action allows, whether it
needs an object, whether it may wait), the runtime (:mod:`.resource_runtime`: which requests,
labels, recording, log streaming), ``rbac`` (verbs and the reason shown beside them) and the
CLI (``--action`` choices). An option listed in :data:`RESTRICTED_OPTIONS` may only be given
to the actions whose row names it; the others are the same for every action.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ..kube import content_types

__all__ = ["ACTIONS", "RESTRICTED_OPTIONS", "ResourceAction", "option_error"]


@dataclass(frozen=True)
class ResourceAction:
    """One action: its request, its RBAC verbs and their reason, and its rules."""

    name: str
    method: str  # the HTTP method of its request (a replace first GETs the current resourceVersion)
    rbac_verbs: tuple[str, ...]
    why: str  # beside the verbs in the Role `k8s-step-operator rbac` renders
    content_types: Mapping[str, str] = field(default_factory=dict)  # of the body, by merge strategy for a patch
    on_collection: bool = False  # sent to the collection's path (create), else to the object's
    options: tuple[str, ...] = ()  # of RESTRICTED_OPTIONS, the ones this action takes
    needs_object: bool = True  # k8s_resource is required (else api_version/kind/name name the target)
    waits: bool = True  # may wait on success/failure conditions and output the object (False: it is gone)
    writes_object: bool = False  # sends the whole object (labels added, owner set; a claim's class is read)
    creates: bool = False  # may create the object: labelled, recorded for clean-up, its pods' logs streamed


# Options only some actions take -> why, for the error naming the field and the actions allowing it.
RESTRICTED_OPTIONS: dict[str, str] = {
    "merge_strategy": "kubectl patch --type; apply always uses server-side apply",
    "k8s_resource.metadata.generateName": "the server picks the name; otherwise give metadata.name",
    "force": "server-side apply conflicts",
    "cleanup": "objects a step creates",
    "set_owner_reference": "objects a step creates",
    "wait_for_deletion": "watch until the object is gone",
}

_ROWS = (
    ResourceAction(
        "get", "GET", ("get",), "action get: read the object", needs_object=False,
    ),
    ResourceAction(
        "create", "POST", ("create",), "action create: create the object",
        content_types={"": content_types.JSON}, on_collection=True,
        options=("k8s_resource.metadata.generateName", "cleanup", "set_owner_reference"),
        writes_object=True, creates=True,
    ),
    # Server-side apply is a PATCH; when the object does not exist yet the API server also checks `create`.
    ResourceAction(
        "apply", "PATCH", ("create", "patch"), "action apply: server-side apply (PATCH; create when it does not exist yet)",
        content_types={"": content_types.APPLY_PATCH},
        options=("force", "cleanup", "set_owner_reference"), writes_object=True, creates=True,
    ),
    ResourceAction(
        "delete", "DELETE", ("delete",), "action delete: delete the object (not-found is ignored)",
        content_types={"": content_types.JSON}, options=("wait_for_deletion",), needs_object=False, waits=False,
    ),
    ResourceAction(
        "replace", "PUT", ("update",), "action replace: PUT the whole object",
        content_types={"": content_types.JSON}, writes_object=True,
    ),
    ResourceAction(
        "patch", "PATCH", ("patch",), "action patch: merge, strategic or JSON patch",
        content_types=dict(content_types.PATCH), options=("merge_strategy",),
    ),
)

ACTIONS: dict[str, ResourceAction] = {row.name: row for row in _ROWS}


def _with(names: list[str]) -> str:
    if len(names) == 1:
        return f"action={names[0]!r}"
    return "action " + " or ".join(repr(name) for name in names)


def option_error(option: str, action: str) -> str | None:
    """None when ``action`` takes ``option``; else the error naming the option and the actions taking it."""
    if option in ACTIONS[action].options:
        return None
    allowed = [name for name, row in ACTIONS.items() if option in row.options]
    return f"{option}: only used with {_with(allowed)} ({RESTRICTED_OPTIONS[option]}); got action={action!r}"

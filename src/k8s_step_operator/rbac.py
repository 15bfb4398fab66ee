"""Least-privilege RBAC for the step operator and the resource steps (pure: no API calls).

One table says which verbs on which resources are needed and why. It is used
three ways: ``k8s-step-operator rbac`` renders it as ServiceAccount, Role and
RoleBinding (plus a ClusterRole and ClusterRoleBinding only when a
cluster-scoped permission is needed), ``k8s-step-operator doctor`` turns it
into one SelfSubjectAccessReview per verb (:func:`required_checks`), and the
tests check that the operator's real API calls fit inside it.

The step operator's calls (see ``step_operator.py`` and ``kube/``):
POST pods as a dry run (steps the preflight did not check), POST jobs, POST
secrets (owned by the Job), POST services (multi-pod steps), LIST + WATCH pods
(one shared watch per namespace, by label selector), GET pods/log (follow),
LIST jobs (after a restart), DELETE jobs (garbage collection deletes the
pods, Secret and Service) or, when failed pods are kept, secrets. It never
reads a Secret back, so ``get``/``list`` on secrets are deliberately absent:
whoever runs ZenML cannot read other Secrets of the namespace through this Role.

Resource steps act on kinds the user chooses; each action adds only its own
verbs (:data:`ACTION_VERBS`, from the actions table in ``steps/actions.py``), plus ``get``/``list``/``watch`` to evaluate
success/failure conditions and read outputs, and — when they create or apply
Jobs or Pods — list/watch on ``pods`` and get on ``pods/log`` to stream the
logs of the pods those start. Workspaces with a ``claim_template`` need
``create`` (the operator, at submission) and ``delete`` (the run-end hook) on
``persistentvolumeclaims`` (:data:`WORKSPACE_PERMISSIONS`, ``rbac --workspaces``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import yaml

from .steps.actions import ACTIONS as _ACTION_TABLE

RBAC_API = "rbac.authorization.k8s.io/v1"
DEFAULT_SERVICE_ACCOUNT = "k8s-step-operator"
VERB_ORDER = ("get", "list", "watch", "create", "update", "patch", "delete")

# read from the resource-step actions table (steps/actions.py)
ACTION_VERBS: dict[str, tuple[str, ...]] = {name: row.rbac_verbs for name, row in _ACTION_TABLE.items()}
ACTIONS = tuple(ACTION_VERBS)
WAIT_VERBS = ("get", "list", "watch")
_WAIT_WHY = "success/failure conditions and outputs: read the object and watch it by name (a watch needs list + watch)"

# What `--resource-steps` covers when no --kind / --action is given: the kinds
# of the bundled volume and snapshot steps, and KFP's default action.
DEFAULT_KINDS = ("persistentvolumeclaims", "volumesnapshots.snapshot.storage.k8s.io")
DEFAULT_ACTIONS = ("create",)

_KIND_ALIASES = {
    "pvc": "persistentvolumeclaims",
    "pvcs": "persistentvolumeclaims",
    "persistentvolumeclaim": "persistentvolumeclaims",
    "volumesnapshot": "volumesnapshots.snapshot.storage.k8s.io",
    "volumesnapshots": "volumesnapshots.snapshot.storage.k8s.io",
    "job": "jobs.batch",
    "jobs": "jobs.batch",
    "cronjob": "cronjobs.batch",
    "cronjobs": "cronjobs.batch",
    "deployment": "deployments.apps",
    "deployments": "deployments.apps",
    "statefulset": "statefulsets.apps",
    "statefulsets": "statefulsets.apps",
    "configmap": "configmaps",
    "cm": "configmaps",
    "service": "services",
    "svc": "services",
    "pod": "pods",
    "secret": "secrets",
}

# Well-known cluster-scoped resources: a Role cannot grant them.
CLUSTER_SCOPED = frozenset(
    {
        "namespaces",
        "nodes",
        "persistentvolumes",
        "storageclasses.storage.k8s.io",
        "csidrivers.storage.k8s.io",
        "csinodes.storage.k8s.io",
        "volumeattachments.storage.k8s.io",
        "volumesnapshotclasses.snapshot.storage.k8s.io",
        "volumesnapshotcontents.snapshot.storage.k8s.io",
        "customresourcedefinitions.apiextensions.k8s.io",
        "clusterroles.rbac.authorization.k8s.io",
        "clusterrolebindings.rbac.authorization.k8s.io",
        "priorityclasses.scheduling.k8s.io",
        "runtimeclasses.node.k8s.io",
        "ingressclasses.networking.k8s.io",
        "mutatingwebhookconfigurations.admissionregistration.k8s.io",
        "validatingwebhookconfigurations.admissionregistration.k8s.io",
        "apiservices.apiregistration.k8s.io",
    }
)

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_GROUP_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class Kind:
    """A resource in ``resource[.group]`` form, e.g. ``jobs.batch``."""

    resource: str
    group: str = ""

    @property
    def qualified(self) -> str:
        """``resource.group`` (just ``resource`` for the core group)."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @property
    def cluster_scoped(self) -> bool:
        """Whether this is one of the well-known cluster-scoped resources."""
        return self.qualified in CLUSTER_SCOPED


@dataclass(frozen=True)
class Permission:
    """Verbs on one resource (``pods``, ``pods/log``, ...) and why they are needed."""

    group: str
    resource: str
    verbs: tuple[str, ...]
    why: str
    cluster_scoped: bool = False

    @property
    def qualified(self) -> str:
        """``pods/log``, ``jobs.batch``, ``storageclasses.storage.k8s.io``."""
        return f"{self.resource}.{self.group}" if self.group else self.resource


@dataclass(frozen=True)
class Check:
    """One access review: may the subject ``verb`` the resource in ``namespace``?"""

    verb: str
    group: str
    resource: str
    subresource: str
    namespace: Optional[str]
    why: str

    @property
    def target(self) -> str:
        """The resource as users write it: ``pods/log``, ``jobs.batch``."""
        name = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{name}.{self.group}" if self.group else name

    @property
    def scope(self) -> str:
        """``namespace X`` or ``the cluster scope``."""
        return self.namespace if self.namespace else "the cluster scope"

    def missing(self) -> str:
        """The line doctor prints when this check fails."""
        return f"forbidden: needs {self.verb} on {self.target} in {self.scope}"

    def resource_attributes(self) -> dict[str, str]:
        """``spec.resourceAttributes`` of a (Self)SubjectAccessReview."""
        attrs = {"verb": self.verb, "group": self.group, "resource": self.resource}
        if self.subresource:
            attrs["subresource"] = self.subresource
        if self.namespace:
            attrs["namespace"] = self.namespace
        return attrs


OPERATOR_PERMISSIONS: tuple[Permission, ...] = (
    Permission(
        "",
        "pods",
        ("create",),
        "submit: a dry run of the step pod (dryRun=All), so admission refuses it before anything exists; "
        "the Job controller creates the real pods",
    ),
    Permission(
        "",
        "pods",
        ("get", "list", "watch"),
        "status and wait: one shared LIST + WATCH of the operator's pods per namespace "
        "(label selector); get adds nothing beyond list",
    ),
    Permission("", "pods/log", ("get",), "stream the step's logs (follow), every container's"),
    Permission(
        "",
        "events",
        ("list", "watch"),
        "status and wait: the reasons Kubernetes gives (FailedScheduling, FailedMount, BackOff) in the "
        "progress lines and a failure's reason; one shared LIST + WATCH per namespace (optional: without it "
        "steps are judged from their pods alone)",
    ),
    Permission(
        "batch",
        "jobs",
        ("create",),
        "submit: the step's Job (its Secret follows, owned by it; Kueue resumes a queued Job itself)",
    ),
    Permission("batch", "jobs", ("list",), "status after a restart: find a step run's Job by label"),
    Permission(
        "batch",
        "jobs",
        ("delete",),
        "clean-up and cancel: delete the Job; garbage collection deletes its pods, Secret and Service",
    ),
    Permission("", "secrets", ("create",), "submit: ZenML's environment goes into a per-step Secret `<job>-env`, "
               "owned by the Job"),
    Permission(
        "",
        "secrets",
        ("delete",),
        "clean-up when failed pods are kept: delete the step's Secret at once (never get/list: the operator "
        "does not read Secrets back)",
    ),
    Permission("", "services", ("create",), "multi-pod command steps: the headless Service giving each pod a "
               "stable DNS name, owned by the Job"),
)

# ``workspaces`` with a ``claim_template``: one claim per run (``rbac --workspaces``)
WORKSPACE_PERMISSIONS: tuple[Permission, ...] = (
    Permission(
        "",
        "persistentvolumeclaims",
        ("create",),
        "workspaces with claim_template: the run's claim, created when the run's first step on the operator "
        "is submitted (the next steps find it: 409)",
    ),
    Permission(
        "",
        "persistentvolumeclaims",
        ("delete",),
        "workspaces with claim_template: cleanup_run_resources deletes the run's claim when the run ends; "
        "the hook runs in the last step's process, so the step pods' ServiceAccount needs this too",
    ),
)

# a resource step that creates or applies a Job or Pod streams its pods' logs while it waits (stream_logs)
POD_LOG_PERMISSIONS: tuple[Permission, ...] = (
    Permission("", "pods", ("list", "watch"), "stream_logs: find the pods a created Job or Pod starts (one LIST + WATCH)"),
    Permission("", "pods/log", ("get",), "stream_logs: follow each container's log while the step waits"),
)

STORAGECLASS_PERMISSION = Permission(
    "storage.k8s.io",
    "storageclasses",
    ("get",),
    "volume steps: read the claim's StorageClass; with volumeBindingMode WaitForFirstConsumer "
    "the claim binds only when a pod uses it, so the step must not wait for Bound",
    cluster_scoped=True,
)


def parse_kind(text: str) -> Kind:
    """Parse ``resource[.group]`` (``jobs.batch``) or a known alias (``pvc``).

    Raises:
        ValueError: If the text is not a plural resource name with an optional group.
    """
    raw = text.strip()
    name = _KIND_ALIASES.get(raw.lower(), raw)
    if name != name.lower():
        raise ValueError(
            f"kind {text!r}: use the plural lower-case resource name with its API group, "
            "as kubectl does (e.g. jobs.batch, persistentvolumeclaims, "
            "volumesnapshots.snapshot.storage.k8s.io)"
        )
    resource, _, group = name.partition(".")
    if not _NAME_RE.match(resource) or (group and not _GROUP_RE.match(group)):
        raise ValueError(
            f"kind {text!r}: expected resource[.group], e.g. jobs.batch or persistentvolumeclaims"
        )
    return Kind(resource, group)


def _ordered(verbs: Iterable[str]) -> tuple[str, ...]:
    unique = set(verbs)
    return tuple(v for v in VERB_ORDER if v in unique) + tuple(sorted(unique - set(VERB_ORDER)))


def resource_step_permissions(
    kinds: Sequence[str | Kind] = DEFAULT_KINDS, actions: Sequence[str] = DEFAULT_ACTIONS
) -> list[Permission]:
    """The permissions resource steps need for ``actions`` on ``kinds``.

    Every action that may wait (all but ``delete``) also needs get/list/watch
    (conditions and outputs). A PersistentVolumeClaim created, applied or
    replaced by a step also needs ``get`` on StorageClasses (cluster-scoped).

    Raises:
        ValueError: For an unknown action or an invalid kind.
    """
    unknown = [a for a in actions if a not in ACTION_VERBS]
    if unknown:
        raise ValueError(f"action {unknown[0]!r} is not allowed; allowed: {', '.join(ACTIONS)}")
    chosen = [a for a in ACTIONS if a in set(actions)]
    parsed: list[Kind] = []
    for kind in kinds:
        item = kind if isinstance(kind, Kind) else parse_kind(kind)
        if item not in parsed:
            parsed.append(item)
    result: list[Permission] = []
    rows = [_ACTION_TABLE[a] for a in chosen]
    for kind in parsed:
        if any(row.waits for row in rows):
            result.append(Permission(kind.group, kind.resource, WAIT_VERBS, _WAIT_WHY, kind.cluster_scoped))
        for row in rows:
            if row.waits and set(row.rbac_verbs) <= set(WAIT_VERBS):
                continue  # covered by the condition verbs above
            result.append(Permission(kind.group, kind.resource, row.rbac_verbs, row.why, kind.cluster_scoped))
    creates_claims = any(k.qualified == "persistentvolumeclaims" for k in parsed) and any(
        row.writes_object for row in rows
    )
    if creates_claims:
        result.append(STORAGECLASS_PERMISSION)
    starts_pods = any(k.qualified in ("jobs.batch", "pods") for k in parsed) and any(row.creates for row in rows)
    if starts_pods:
        result += POD_LOG_PERMISSIONS
    return result


def permissions(
    resource_steps: bool = False,
    kinds: Sequence[str | Kind] = (),
    actions: Sequence[str] = (),
    workspaces: bool = False,
) -> list[Permission]:
    """The operator's permissions, plus the resource steps' and the per-run workspace claims' when asked for.

    Empty ``kinds``/``actions`` mean :data:`DEFAULT_KINDS` / :data:`DEFAULT_ACTIONS`.
    """
    result = list(OPERATOR_PERMISSIONS)
    if workspaces:
        result += WORKSPACE_PERMISSIONS
    if resource_steps:
        result += resource_step_permissions(kinds or DEFAULT_KINDS, actions or DEFAULT_ACTIONS)
    return result


def required_checks(
    namespace: str,
    resource_steps: bool = False,
    kinds: Sequence[str | Kind] = (),
    actions: Sequence[str] = (),
) -> list[Check]:
    """One access review per verb and resource, in table order, without duplicates."""
    checks: list[Check] = []
    seen: set[tuple[str, str, str, str]] = set()
    for perm in permissions(resource_steps, kinds, actions):
        resource, _, sub = perm.resource.partition("/")
        for verb in perm.verbs:
            key = (verb, perm.group, perm.resource, "" if perm.cluster_scoped else namespace)
            if key in seen:
                continue
            seen.add(key)
            checks.append(
                Check(verb, perm.group, resource, sub, None if perm.cluster_scoped else namespace, perm.why)
            )
    return checks


def workspace_checks(namespace: str) -> list[Check]:
    """The access reviews of :data:`WORKSPACE_PERMISSIONS` (the preflight's, for runs with a claim_template)."""
    return [Check(verb, p.group, p.resource, "", namespace, p.why) for p in WORKSPACE_PERMISSIONS for verb in p.verbs]


@dataclass(frozen=True)
class Access:
    """The RBAC attributes of one API request (what the API server authorizes)."""

    verb: str
    group: str
    resource: str
    subresource: str
    namespace: Optional[str]

    @property
    def target(self) -> str:
        """``pods/log``, ``jobs.batch``."""
        name = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{name}.{self.group}" if self.group else name


def request_access(method: str, path: str, query: Optional[dict[str, Any]] = None) -> Access:
    """Resolve a resource request like the API server's RequestInfo does.

    ``GET`` is get/list/watch (by name, collection, ``watch=true``);
    ``POST`` create, ``PUT`` update, ``PATCH`` patch, ``DELETE`` delete or
    deletecollection.

    Raises:
        ValueError: For a path that is not a resource path.
    """
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        raise ValueError(f"not a resource path: {path}")
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest:
        raise ValueError(f"not a resource path: {path}")
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    watching = str((query or {}).get("watch", "")).lower() in ("true", "1")
    verb = {
        "GET": "watch" if watching else ("get" if name else "list"),
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if name else "deletecollection",
    }[method.upper()]
    return Access(verb, group, resource, sub, namespace)


def allows(perms: Sequence[Permission], access: Access, namespace: str) -> bool:
    """Whether ``perms`` (bound in ``namespace``) grant ``access``."""
    resource = f"{access.resource}/{access.subresource}" if access.subresource else access.resource
    for perm in perms:
        if perm.group != access.group or perm.resource != resource or access.verb not in perm.verbs:
            continue
        if perm.cluster_scoped or access.namespace == namespace:
            return True
    return False


# ---------------------------------------------------------------- manifests
def cluster_role_name(namespace: str, service_account: str) -> str:
    """Cluster-wide unique name for the cluster-scoped objects of one account."""
    return f"k8s-step-operator:{namespace}:{service_account}"


def _rules(perms: Sequence[Permission]) -> list[tuple[dict[str, Any], list[str]]]:
    """Merge permissions per (group, resource) into Role rules, keeping each reason."""
    merged: dict[tuple[str, str], tuple[set[str], list[str]]] = {}
    for perm in perms:
        verbs, reasons = merged.setdefault((perm.group, perm.resource), (set(), []))
        verbs.update(perm.verbs)
        reasons.append(f"{', '.join(perm.verbs)}: {perm.why}")
    return [
        (
            {"apiGroups": [group], "resources": [resource], "verbs": list(_ordered(verbs))},
            reasons,
        )
        for (group, resource), (verbs, reasons) in merged.items()
    ]


def service_account(name: str, namespace: str) -> dict[str, Any]:
    """The ServiceAccount the operator (or the step pods) run as."""
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}


def role(name: str, namespace: str, perms: Sequence[Permission]) -> dict[str, Any]:
    """A Role with the namespaced permissions."""
    return {
        "apiVersion": RBAC_API,
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": [rule for rule, _ in _rules([p for p in perms if not p.cluster_scoped])],
    }


def cluster_role(name: str, perms: Sequence[Permission]) -> dict[str, Any]:
    """A ClusterRole with only the cluster-scoped permissions."""
    return {
        "apiVersion": RBAC_API,
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [rule for rule, _ in _rules([p for p in perms if p.cluster_scoped])],
    }


def _subjects(service_account_name: str, namespace: str) -> list[dict[str, str]]:
    return [{"kind": "ServiceAccount", "name": service_account_name, "namespace": namespace}]


def role_binding(name: str, namespace: str, service_account_name: str) -> dict[str, Any]:
    """Binds the Role ``name`` to the ServiceAccount."""
    return {
        "apiVersion": RBAC_API,
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": _subjects(service_account_name, namespace),
    }


def cluster_role_binding(name: str, namespace: str, service_account_name: str) -> dict[str, Any]:
    """Binds the ClusterRole ``name`` to the ServiceAccount."""
    return {
        "apiVersion": RBAC_API,
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": _subjects(service_account_name, namespace),
    }


def manifests(
    namespace: str,
    service_account_name: str = DEFAULT_SERVICE_ACCOUNT,
    perms: Optional[Sequence[Permission]] = None,
) -> list[dict[str, Any]]:
    """ServiceAccount, Role, RoleBinding and, only if needed, ClusterRole + ClusterRoleBinding."""
    perms = list(OPERATOR_PERMISSIONS) if perms is None else list(perms)
    docs = [
        service_account(service_account_name, namespace),
        role(service_account_name, namespace, perms),
        role_binding(service_account_name, namespace, service_account_name),
    ]
    if any(p.cluster_scoped for p in perms):
        name = cluster_role_name(namespace, service_account_name)
        docs += [cluster_role(name, perms), cluster_role_binding(name, namespace, service_account_name)]
    return docs


def _flow(values: Sequence[str]) -> str:
    return json.dumps(list(values))


def _document(doc: dict[str, Any], perms: Sequence[Permission], cluster: bool) -> str:
    """YAML for one object; rules are written by hand so each carries its reasons."""
    head = {k: v for k, v in doc.items() if k != "rules"}
    text = yaml.safe_dump(head, sort_keys=False)
    if "rules" not in doc:
        return text
    lines = [text.rstrip("\n"), "rules:"]
    for rule, reasons in _rules([p for p in perms if p.cluster_scoped == cluster]):
        lines.append(f"# {rule['resources'][0]}{'.' + rule['apiGroups'][0] if rule['apiGroups'][0] else ''}")
        lines += [f"#   {reason}" for reason in reasons]
        lines.append(f"- apiGroups: {_flow(rule['apiGroups'])}")
        lines.append(f"  resources: {_flow(rule['resources'])}")
        lines.append(f"  verbs: {_flow(rule['verbs'])}")
    return "\n".join(lines) + "\n"


def render_yaml(
    namespace: str,
    service_account_name: str = DEFAULT_SERVICE_ACCOUNT,
    perms: Optional[Sequence[Permission]] = None,
) -> str:
    """Multi-document YAML (``kubectl apply -f -``) with a comment on every rule."""
    perms = list(OPERATOR_PERMISSIONS) if perms is None else list(perms)
    docs = manifests(namespace, service_account_name, perms)
    subject = f"system:serviceaccount:{namespace}:{service_account_name}"
    header = [
        f"# Least-privilege RBAC for the k8s step operator in namespace {namespace!r}.",
        "# Generated by `k8s-step-operator rbac`; apply with `kubectl apply -f <file>`.",
        "# Run ZenML as this ServiceAccount (or bind the Role to your own user/group),",
        f"# then verify with: k8s-step-operator doctor --namespace {namespace} --as {subject}",
        "# No get/list on secrets: the operator writes each step's Secret and never reads one.",
    ]
    parts = []
    for doc in docs:
        kind = doc["kind"]
        if kind == "Role":
            parts.append(_document(doc, perms, cluster=False))
        elif kind == "ClusterRole":
            comment = "# Cluster-scoped permissions (a Role cannot grant them).\n"
            parts.append(comment + _document(doc, perms, cluster=True))
        else:
            parts.append(_document(doc, perms, cluster=False))
    return "\n".join(header) + "\n" + "---\n".join(parts)

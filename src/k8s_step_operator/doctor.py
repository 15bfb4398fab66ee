"""The checks of ``k8s-step-operator doctor``: connection, namespace, service account, permissions.

Each check writes ✓/!/✗ lines to a :class:`Report`, which hands every line to
the caller's ``emit`` and keeps the failures; :meth:`Report.finish` (or
:meth:`Report.fail` for a check the others depend on) raises
:class:`DoctorFailed` with them. Permissions are checked with one
SelfSubjectAccessReview per verb and resource (:func:`run_access_reviews`).
The Kubernetes client and ZenML are imported inside the functions.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Optional, Sequence

from . import rbac

if TYPE_CHECKING:
    from kubernetes import client as k8s

    from .kube.client import Client

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
REQUEST_TIMEOUT = 15


class DoctorFailed(Exception):
    """Some check failed; ``failures`` holds one line each (what is missing, for stderr)."""

    def __init__(self, failures: Sequence[str]) -> None:
        super().__init__("\n".join(failures))
        self.failures = list(failures)


class Report:
    """Passes ✓/!/✗ lines to ``emit`` as they come; collects the failures."""

    def __init__(self, emit: Callable[[str], None], encoding: Optional[str] = None) -> None:
        self.emit = emit
        self.failures: list[str] = []
        try:
            "✓✗".encode(encoding or "utf-8")
            self.ok_mark, self.bad_mark = "✓", "✗"
        except (UnicodeEncodeError, LookupError):
            self.ok_mark, self.bad_mark = "OK", "XX"

    def ok(self, text: str) -> None:
        self.emit(f"{self.ok_mark} {text}")

    def warn(self, text: str) -> None:
        self.emit(f"! {text}")

    def bad(self, text: str, failure: Optional[str] = None) -> None:
        self.emit(f"{self.bad_mark} {text}")
        self.failures.append(failure or text)

    def finish(self) -> None:
        """Raise :class:`DoctorFailed` if anything failed."""
        if self.failures:
            raise DoctorFailed(self.failures)

    def fail(self, text: str, failure: Optional[str] = None) -> NoReturn:
        """A failure the remaining checks cannot go on without."""
        self.bad(text, failure)
        raise DoctorFailed(self.failures)


def api_error(exc: Exception) -> str:
    """``HTTP <status>: <server message>`` for an API error, ``<type>: <text>`` for anything else."""
    from kubernetes.client.exceptions import ApiException

    from .kube.errors import api_message

    if isinstance(exc, ApiException) and exc.status:
        return f"HTTP {exc.status}: {api_message(exc)}"
    return f"{type(exc).__name__}: {exc}"


def _client(api: "k8s.ApiClient", timeout: float = REQUEST_TIMEOUT) -> "Client":
    """doctor's requests: one try each (a check reports what it got), ``timeout`` seconds."""
    from .kube.client import Client

    return Client(api, timeout=timeout, policy=None)


@dataclass(frozen=True)
class Target:
    """Where doctor connects: a kubeconfig/context, in-cluster configuration or a service connector."""

    kubeconfig: Optional[str] = None
    context: Optional[str] = None
    namespace: Optional[str] = None
    incluster: bool = False
    connector: Any = None


def component_target(name: str, given: Target, report: Report) -> Target:
    """``given`` completed from the registered step operator ``name`` (its connector unless in-cluster)."""
    from zenml.stack import StackComponent

    from .flavor import FLAVOR_NAME
    from .settings_files import ComponentError, registered_component

    model, config = registered_component(name)
    kubeconfig = given.kubeconfig or config.kubeconfig
    context = given.context or config.kubernetes_context
    connector = None
    if model.connector is not None and not config.incluster:
        from .kube.connection import fix_zenml_connector_verification

        fix_zenml_connector_verification()
        try:
            connector = StackComponent.from_model(model).get_connector()
        except Exception as exc:  # noqa: BLE001 - reported to the user
            raise ComponentError(f"cannot use the service connector of `{name}`: {exc}") from exc
    report.ok(f"component `{name}` (flavor {FLAVOR_NAME})")
    return replace(
        given,
        kubeconfig=kubeconfig,
        context=context,
        namespace=given.namespace or config.kubernetes_namespace,
        incluster=config.incluster and not (kubeconfig or context),
        connector=connector,
    )


def load_api(target: Target, report: Report) -> "k8s.ApiClient":
    """The ApiClient for the target; a clear failure (naming the file or context) if impossible."""
    from kubernetes import config as kconfig

    from .kube.connection import load_api_client

    if target.connector is not None or target.incluster:
        where = "service connector" if target.connector is not None else "in-cluster configuration"
        try:
            return load_api_client(incluster=target.incluster, connector=target.connector)
        except Exception as exc:  # noqa: BLE001 - reported to the user
            report.fail(f"cannot load the {where}: {exc}")
    kubeconfig, context = target.kubeconfig, target.context
    path = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    config_file = str(Path(kubeconfig).expanduser()) if kubeconfig else None
    if config_file and not Path(config_file).exists():
        report.fail(f"kubeconfig {kubeconfig} does not exist")
    try:
        contexts, active = kconfig.list_kube_config_contexts(config_file=config_file)
    except Exception as exc:  # noqa: BLE001 - missing/invalid file
        report.fail(f"cannot read kubeconfig {path}: {exc}")
    names = [c["name"] for c in contexts or []]
    if context and context not in names:
        report.fail(
            f"context `{context}` does not exist in kubeconfig {path}; available: {', '.join(names) or 'none'}",
            f"error: context `{context}` not found in kubeconfig {path}",
        )
    chosen = context or (active or {}).get("name")
    if not chosen:
        report.fail(f"kubeconfig {path} has no current-context; pass --context")
    try:
        api = load_api_client(context=chosen, kubeconfig=config_file)
    except Exception as exc:  # noqa: BLE001 - reported to the user
        report.fail(f"cannot load context `{chosen}` from {path}: {exc}")
    report.ok(f"kubeconfig {path}, context `{chosen}`")
    return api


def check_server(api: "k8s.ApiClient", report: Report) -> None:
    """The API server answers (and its version)."""
    try:
        version = _client(api).get("/version")
    except Exception as exc:  # noqa: BLE001 - any transport/auth problem
        report.fail(f"cannot reach the API server at {api.configuration.host}: {api_error(exc)}")
    report.ok(f"API server {api.configuration.host} (Kubernetes {version.get('gitVersion')})")


def _check_exists(report: Report, what: str, read: Callable[[], Any], hint: str) -> Optional[Exception]:
    """✓ ``<what> exists`` or ✗ ``<what> does not exist (<hint>)``; any other API error is returned."""
    from .kube.errors import ApiError, NotFound

    try:
        read()
    except NotFound:
        report.bad(f"{what} does not exist ({hint})", f"error: {what} does not exist")
        return None
    except ApiError as exc:
        return exc
    report.ok(f"{what} exists")
    return None


def check_namespace(api: "k8s.ApiClient", namespace: str, report: Report) -> None:
    """The namespace exists (a warning if the user may not read namespaces)."""
    from .kube.errors import Forbidden

    read = functools.partial(_client(api).get, f"/api/v1/namespaces/{namespace}")
    error = _check_exists(report, f"namespace {namespace}", read, f"kubectl create namespace {namespace}")
    if isinstance(error, Forbidden):
        report.warn(f"namespace {namespace}: not allowed to read namespaces, cannot tell whether it exists")
    elif error is not None:
        report.bad(f"namespace {namespace}: {api_error(error)}")


def check_service_account(api: "k8s.ApiClient", user: str, report: Report) -> None:
    """Impersonation works for accounts that do not exist: say so instead of a wall of ✗."""
    parts = user.split(":")
    if len(parts) != 4 or not parts[2] or not parts[3]:
        report.bad(f"--as {user}: expected system:serviceaccount:<namespace>:<name>")
        return
    ns, name = parts[2], parts[3]
    read = functools.partial(_client(api).get, f"/api/v1/namespaces/{ns}/serviceaccounts/{name}")
    error = _check_exists(report, f"service account {ns}/{name}", read, "create it with `k8s-step-operator rbac`")
    if error is not None:
        report.warn(f"service account {ns}/{name}: cannot check ({api_error(error)})")


def impersonate(api: "k8s.ApiClient", user: str, report: Report) -> None:
    """Send the following requests as ``user`` (a service account is checked to exist first)."""
    if user.startswith(SERVICE_ACCOUNT_PREFIX):
        check_service_account(api, user, report)
    api.set_default_header("Impersonate-User", user)


def run_access_reviews(api: "k8s.ApiClient", checks: Sequence[rbac.Check]) -> list[tuple[rbac.Check, bool, str]]:
    """One SelfSubjectAccessReview per check: (check, allowed, reason)."""
    client = _client(api, timeout=30)
    results = []
    for check in checks:
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": check.resource_attributes()},
        }
        path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
        status = client.create(path, review).get("status") or {}
        results.append((check, bool(status.get("allowed")), status.get("reason") or status.get("evaluationError") or ""))
    return results


def check_permissions(
    api: "k8s.ApiClient", checks: Sequence[rbac.Check], as_user: Optional[str], report: Report
) -> None:
    """One line per check (verb, resource, why); a denied one fails with what is missing."""
    from .kube.errors import ApiError, Forbidden

    try:
        results = run_access_reviews(api, checks)
    except ApiError as exc:
        hint = f" (impersonating {as_user} needs `impersonate` permission)" if as_user and isinstance(exc, Forbidden) else ""
        report.fail(f"cannot create SelfSubjectAccessReviews: {api_error(exc)}{hint}")
    width = max(len(c.target) for c in checks)
    for check, allowed, reason in results:
        line = f"{check.verb:<7} {check.target:<{width}}  {check.why}"
        if allowed:
            report.ok(line)
        else:
            report.bad(line + (f" [{reason}]" if reason else ""), check.missing())

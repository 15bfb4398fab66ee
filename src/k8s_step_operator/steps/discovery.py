"""API discovery: kind → plural name and scope, and the REST paths built from them.

Finding a kind is the official client's job: :func:`resolve` asks the lazy
discoverer of ``kubernetes.dynamic`` (the only place this package uses it),
which reads ``/apis`` once, a group version's resource list when it is first
asked about, and discovers everything again when a kind is missing (a CRD
created a moment ago). A kind still missing is asked for again a few times,
since a new CRD shows up in discovery a little after it is Established.

Two choices around it:

* Its cache is kept in memory, one per API server and process. By default the
  discoverer also writes what it found to ``<tempdir>/osrcp-<md5(host)>.json``
  and trusts that file in the next process, so a cluster started later on the
  same address (the test clusters reuse addresses) would be described by an
  earlier one's kinds, and a deleted CRD would still resolve. The cache file
  named here can never exist (it is below ``/dev/null``), and the discoverer
  ignores a cache it cannot write.
* Its requests are sent with the step's current client (a service connector
  may have renewed its credentials), with a timeout, and retried like ours
  when they fail transiently.

:class:`ApiResource`, fed from what the discoverer found, is pure: the paths
and the name RBAC rules use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from kubernetes.dynamic.resource import Resource, ResourceList

from ..kube import retry
from .errors import translate_api_error
from .resource_spec import ResourceSpecError

__all__ = [
    "ApiResource",
    "find_resource",
    "group_version_path",
    "resolve",
    "split_api_version",
]

REFRESH_ATTEMPTS = 5
REFRESH_DELAY = 0.5
_REQUEST_TIMEOUT = 30.0
_RETRY = retry.RetryPolicy(request_timeout=None)
_NO_CACHE_FILE = "/dev/null/k8s-step-operator-discovery.json"


@dataclass(frozen=True)
class ApiResource:
    """One served resource: enough to build its paths and name it in messages."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        """API group ('' for core)."""
        return split_api_version(self.api_version)[0]

    @property
    def display(self) -> str:
        """``plural`` or ``plural.group`` as RBAC rules and kubectl name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def collection_path(self, namespace: str | None) -> str:
        """The list/create path (namespace ignored for cluster-scoped kinds)."""
        base = group_version_path(self.api_version)
        if self.namespaced:
            if not namespace:
                raise ValueError(f"namespace: required for the namespaced kind {self.kind}")
            return f"{base}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        return f"{base}/{self.plural}"

    def object_path(self, namespace: str | None, name: str) -> str:
        """The path of one object."""
        return f"{self.collection_path(namespace)}/{quote(name, safe='')}"


def split_api_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` → (``apps``, ``v1``); ``v1`` → (``""``, ``v1``)."""
    group, _, version = api_version.rpartition("/")
    return group, version


def group_version_path(api_version: str) -> str:
    """``/api/v1`` for core, ``/apis/<group>/<version>`` otherwise."""
    group, version = split_api_version(api_version)
    return f"/apis/{group}/{version}" if group else f"/api/{version}"


def find_resource(
    resources: Mapping[str, ApiResource], api_version: str, kind: str, field_name: str = "k8s_resource.kind"
) -> ApiResource:
    """Look ``kind`` up; the error names the field and lists the kinds that exist."""
    if kind in resources:
        return resources[kind]
    hint = ""
    folded = {k.lower(): k for k in resources}
    if kind.lower() in folded:
        hint = f" (did you mean {folded[kind.lower()]!r}? kinds are case-sensitive)"
    available = ", ".join(sorted(resources)) or "none"
    raise ResourceSpecError(
        f"{field_name}: the cluster serves no kind {kind!r} in apiVersion {api_version!r}{hint}; "
        f"kinds there: {available}"
    )


# --------------------------------------------------------------------------- #
# The official discoverer
# --------------------------------------------------------------------------- #


class _Discovery(DynamicClient):
    """``kubernetes.dynamic``'s client, used for its discoverer only; every request it sends has a timeout."""

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        params.setdefault("_request_timeout", _REQUEST_TIMEOUT)
        return super().request(method, path, body=body, **params)


_lock = threading.Lock()
_by_server: dict[str, _Discovery] = {}


def _discovery(api: client.ApiClient) -> _Discovery:
    """The discoverer of ``api``'s server (created on first use: it reads ``/version`` and ``/apis``), sending with ``api``."""
    server = str(api.configuration.host)
    found = _by_server.get(server)
    if found is None:
        found = _by_server[server] = _Discovery(api, cache_file=_NO_CACHE_FILE)
    found.client, found.configuration = api, api.configuration
    return found


def _served(api: client.ApiClient, api_version: str, kind: str | None) -> list[ApiResource]:
    """The resources of ``kind`` (None: of every kind) in ``api_version``; the discoverer refreshes when none."""
    group, version = split_api_version(api_version)
    where = {"prefix": "apis" if group else "api", "group": group, "api_version": version}
    try:
        found = _discovery(api).resources.search(**where, **({"kind": kind} if kind else {}))
    except ResourceNotFoundError:  # listed in /apis but its resource list is gone (404)
        return []
    return [_api_resource(item, api_version) for item in found if not isinstance(item, ResourceList)]


def _api_resource(item: Resource, api_version: str) -> ApiResource:
    return ApiResource(
        api_version=api_version,
        kind=str(item.kind),
        plural=str(item.name),
        namespaced=bool(item.namespaced),
        verbs=tuple(item.verbs or ()),
    )


def _discover(api: client.ApiClient, api_version: str, kind: str | None) -> list[ApiResource]:
    def attempt() -> list[ApiResource]:
        with _lock:
            return _served(api, api_version, kind)

    try:
        return retry.call(attempt, policy=_RETRY)
    except ApiException as exc:
        raise translate_api_error(exc, "get", f"discovery of {api_version}", None, "API discovery") from None


def resolve(api: client.ApiClient, api_version: str, kind: str, field_name: str = "k8s_resource.kind") -> ApiResource:
    """The resource for ``kind`` in ``api_version``; a clear error naming ``field_name`` when it is not served."""
    for attempt in range(REFRESH_ATTEMPTS):
        found = _discover(api, api_version, kind)
        if found:
            return found[0]
        if attempt + 1 < REFRESH_ATTEMPTS:
            time.sleep(REFRESH_DELAY)
    kinds: dict[str, ApiResource] = {}
    for res in _discover(api, api_version, None):
        kinds.setdefault(res.kind, res)
    if not kinds:
        raise ResourceSpecError(
            f"{field_name.rsplit('.', 1)[0]}.apiVersion: the cluster does not serve apiVersion "
            f"{api_version!r} (is the CRD or API extension installed?)"
        )
    return find_resource(kinds, api_version, kind, field_name)

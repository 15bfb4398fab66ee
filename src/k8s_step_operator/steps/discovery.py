"""API discovery: kind → plural name and scope, and the REST paths built from them.

Parsing and path building are pure. :class:`DiscoveryCache` keeps one
``APIResourceList`` per (server, apiVersion) and is given the function that
fetches ``GET /api/v1`` or ``GET /apis/<group>/<version>``, so it is testable
without a cluster. A kind missing from a cached list triggers one refetch
(a CRD created a moment ago shows up in discovery only after it is Established).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .resource_spec import ResourceSpecError

__all__ = [
    "ApiResource",
    "DiscoveryCache",
    "discovery_path",
    "find_resource",
    "parse_resource_list",
    "split_api_version",
]


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
        base = discovery_path(self.api_version)
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


def discovery_path(api_version: str) -> str:
    """``/api/v1`` for core, ``/apis/<group>/<version>`` otherwise."""
    group, version = split_api_version(api_version)
    return f"/apis/{group}/{version}" if group else f"/api/{version}"


def parse_resource_list(api_version: str, doc: Mapping[str, Any]) -> dict[str, ApiResource]:
    """Kinds of an ``APIResourceList`` (subresources such as ``pods/status`` skipped)."""
    result: dict[str, ApiResource] = {}
    for item in doc.get("resources") or []:
        plural = item.get("name") or ""
        if not plural or "/" in plural:
            continue
        kind = item.get("kind") or ""
        result.setdefault(
            kind,
            ApiResource(
                api_version=api_version,
                kind=kind,
                plural=plural,
                namespaced=bool(item.get("namespaced")),
                verbs=tuple(item.get("verbs") or ()),
            ),
        )
    return result


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


class DiscoveryCache:
    """Cached discovery per (server, apiVersion); ``fetch(path)`` returns the parsed JSON.

    ``fetch`` returning None means the group/version is not served (404).
    """

    def __init__(self, refresh_attempts: int = 5, refresh_delay: float = 0.5) -> None:
        self._lists: dict[tuple[str, str], dict[str, ApiResource]] = {}
        self._lock = threading.Lock()
        self.refresh_attempts = refresh_attempts
        self.refresh_delay = refresh_delay

    def clear(self) -> None:
        """Forget everything (e.g. after installing CRDs)."""
        with self._lock:
            self._lists.clear()

    def _load(
        self, server: str, api_version: str, fetch: Callable[[str], Mapping[str, Any] | None]
    ) -> dict[str, ApiResource] | None:
        doc = fetch(discovery_path(api_version))
        if doc is None:
            return None
        parsed = parse_resource_list(api_version, doc)
        with self._lock:
            self._lists[(server, api_version)] = parsed
        return parsed

    def resolve(
        self,
        server: str,
        api_version: str,
        kind: str,
        fetch: Callable[[str], Mapping[str, Any] | None],
        field_name: str = "k8s_resource.kind",
    ) -> ApiResource:
        """The resource for ``kind``; refetches a few times when it is not (yet) served."""
        with self._lock:
            cached = self._lists.get((server, api_version))
        if cached is not None and kind in cached:
            return cached[kind]
        resources: dict[str, ApiResource] | None = None
        for attempt in range(self.refresh_attempts):
            resources = self._load(server, api_version, fetch)
            if resources is not None and kind in resources:
                return resources[kind]
            if attempt + 1 < self.refresh_attempts:
                time.sleep(self.refresh_delay)
        if resources is None:
            raise ResourceSpecError(
                f"{field_name.rsplit('.', 1)[0]}.apiVersion: the cluster does not serve apiVersion "
                f"{api_version!r} (is the CRD or API extension installed?)"
            )
        return find_resource(resources, api_version, kind, field_name)


#: The process-wide cache used by the runtime.
CACHE = DiscoveryCache()

"""API discovery through kubernetes.dynamic, against a fake API server behind a real ApiClient (no cluster)."""

from __future__ import annotations

import hashlib
import json
import tempfile
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from k8s_step_operator.steps import discovery
from k8s_step_operator.steps.discovery import ApiResource, find_resource, group_version_path, resolve
from k8s_step_operator.steps.errors import Forbidden
from k8s_step_operator.steps.resource_spec import ResourceSpecError

CORE = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {"name": "configmaps", "kind": "ConfigMap", "namespaced": True, "verbs": ["get", "create"]},
        {"name": "pods", "kind": "Pod", "namespaced": True, "verbs": ["get"]},
        {"name": "pods/status", "kind": "Pod", "namespaced": True, "verbs": ["get"]},
        {"name": "namespaces", "kind": "Namespace", "namespaced": False, "verbs": ["get"]},
    ],
}


def group_list(*groups: str) -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "groups": [
            {
                "name": name,
                "versions": [{"groupVersion": f"{name}/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": f"{name}/v1", "version": "v1"},
            }
            for name in groups
        ],
    }


def resource_list(group_version: str, *kinds: tuple[str, str, bool]) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "groupVersion": group_version,
        "resources": [{"name": plural, "kind": kind, "namespaced": namespaced, "verbs": ["get"]}
                      for kind, plural, namespaced in kinds],
    }


class FakeServer:
    """Discovery documents by path; every request is recorded with its timeout; ``errors`` are raised once each."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.docs: dict[str, Any] = {"/version": {"major": "1", "minor": "34"}, "/apis": group_list(), "/api/v1": CORE}
        self.calls: list[tuple[str, Any]] = []
        self.errors: dict[str, list[int]] = {}

    def client(self) -> client.ApiClient:
        api = client.ApiClient(client.Configuration(host=self.host))
        api.call_api = self.call_api  # type: ignore[method-assign]
        return api

    def call_api(self, path: str, method: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((path, kwargs.get("_request_timeout")))
        if self.errors.get(path):
            status = self.errors[path].pop(0)
            raise ApiException(status=status, reason="refused", http_resp=None) if status else ConnectionError()
        if path not in self.docs:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(data=json.dumps(self.docs[path]).encode())

    def paths(self) -> list[str]:
        return [path for path, _ in self.calls]


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery, "_by_server", {})
    monkeypatch.setattr(discovery, "REFRESH_DELAY", 0)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    yield FakeServer(f"https://{uuid.uuid4().hex[:12]}.example:6443")


def test_paths_and_names() -> None:
    assert group_version_path("v1") == "/api/v1" and group_version_path("batch/v1") == "/apis/batch/v1"
    cm = ApiResource("v1", "ConfigMap", "configmaps", True)
    assert cm.object_path("ns", "a") == "/api/v1/namespaces/ns/configmaps/a" and cm.display == "configmaps"
    crd = ApiResource("example.com/v1", "Widget", "widgets", False)
    assert crd.object_path("ignored", "w") == "/apis/example.com/v1/widgets/w" and crd.display == "widgets.example.com"
    with pytest.raises(ValueError, match="namespace: required for the namespaced kind ConfigMap"):
        cm.collection_path(None)


def test_unknown_kind_lists_known_ones() -> None:
    kinds = {k: ApiResource("v1", k, k.lower() + "s", True) for k in ("ConfigMap", "Pod", "Namespace")}
    with pytest.raises(ResourceSpecError, match=r"did you mean 'ConfigMap'\?.*kinds there: ConfigMap, Namespace, Pod"):
        find_resource(kinds, "v1", "configmap")


def test_core_kind_found_once_then_kept(server: FakeServer) -> None:
    api = server.client()
    assert resolve(api, "v1", "ConfigMap") == ApiResource("v1", "ConfigMap", "configmaps", True, ("get", "create"))
    assert server.paths() == ["/version", "/apis", "/api/v1"]  # only the core list, not every group's
    assert resolve(api, "v1", "Namespace").namespaced is False
    assert resolve(api, "v1", "Pod").plural == "pods"  # pods/status is a subresource
    assert len(server.calls) == 3
    assert {timeout for _, timeout in server.calls} == {30.0}


def test_a_crd_created_after_discovery_is_found(server: FakeServer) -> None:
    api = server.client()
    resolve(api, "v1", "ConfigMap")
    server.docs["/apis"] = group_list("example.com")
    server.docs["/apis/example.com/v1"] = resource_list("example.com/v1", ("Widget", "widgets", True))
    widget = resolve(api, "example.com/v1", "Widget")
    assert widget.collection_path("ns") == "/apis/example.com/v1/namespaces/ns/widgets"
    # a second kind in the same, already read, group version: read again when asked for
    server.docs["/apis/example.com/v1"] = resource_list(
        "example.com/v1", ("Widget", "widgets", True), ("Gadget", "gadgets", False)
    )
    gadget = resolve(api, "example.com/v1", "Gadget")
    assert (gadget.plural, gadget.namespaced, gadget.display) == ("gadgets", False, "gadgets.example.com")


def test_a_kind_showing_up_late_is_asked_for_again(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    api = server.client()
    server.docs["/apis"] = group_list("example.com")
    server.docs["/apis/example.com/v1"] = resource_list("example.com/v1")
    served = server.call_api

    def established_later(path: str, method: str, *args: Any, **kwargs: Any) -> Any:
        if server.paths().count("/apis/example.com/v1") == 6:
            server.docs["/apis/example.com/v1"] = resource_list("example.com/v1", ("Widget", "widgets", True))
        return served(path, method, *args, **kwargs)

    api.call_api = established_later  # type: ignore[method-assign]
    assert resolve(api, "example.com/v1", "Widget").plural == "widgets"


def test_unknown_kind_names_field_and_lists_kinds(server: FakeServer) -> None:
    with pytest.raises(ResourceSpecError) as info:
        resolve(server.client(), "v1", "Configmap", "set_owner_reference.kind")
    assert str(info.value) == (
        "set_owner_reference.kind: the cluster serves no kind 'Configmap' in apiVersion 'v1' (did you mean "
        "'ConfigMap'? kinds are case-sensitive); kinds there: ConfigMap, Namespace, Pod"
    )


def test_a_list_kind_is_not_a_kind(server: FakeServer) -> None:
    with pytest.raises(ResourceSpecError, match="serves no kind 'ConfigMapList' in apiVersion 'v1'"):
        resolve(server.client(), "v1", "ConfigMapList")


@pytest.mark.parametrize("listed", [False, True], ids=["absent from /apis", "listed but 404"])
def test_unserved_api_version(server: FakeServer, listed: bool) -> None:
    if listed:
        server.docs["/apis"] = group_list("x.io")
    with pytest.raises(ResourceSpecError) as info:
        resolve(server.client(), "x.io/v1", "Thing")
    assert str(info.value) == (
        "k8s_resource.apiVersion: the cluster does not serve apiVersion 'x.io/v1' (is the CRD or API extension installed?)"
    )


def test_transient_failures_are_retried_and_refusals_named(server: FakeServer) -> None:
    server.errors["/apis"] = [503, 0]  # a 503, then a dropped connection
    assert resolve(server.client(), "v1", "ConfigMap").plural == "configmaps"
    denied = FakeServer(f"https://{uuid.uuid4().hex[:12]}.example:6443")
    denied.errors["/apis"] = [403]
    with pytest.raises(Forbidden, match=r"^forbidden: get on discovery of v1: refused"):
        resolve(denied.client(), "v1", "ConfigMap")


def test_requests_go_through_the_current_client(server: FakeServer) -> None:
    first, second = server.client(), server.client()
    resolve(first, "v1", "ConfigMap")
    used: list[str] = []
    served = second.call_api

    def record(path: str, method: str, *args: Any, **kwargs: Any) -> Any:
        used.append(path)
        return served(path, method, *args, **kwargs)

    second.call_api = record  # type: ignore[method-assign]
    server.docs["/apis"] = group_list("example.com")
    server.docs["/apis/example.com/v1"] = resource_list("example.com/v1", ("Widget", "widgets", True))
    resolve(second, "example.com/v1", "Widget")
    assert "/apis/example.com/v1" in used


def test_no_cache_file_is_read_or_written(server: FakeServer) -> None:
    default = Path(tempfile.gettempdir()) / f"osrcp-{hashlib.md5(server.host.encode()).hexdigest()}.json"
    default.write_text("{not json")  # what another process's discoverer might have left
    try:
        resolve(server.client(), "v1", "ConfigMap")
        assert default.read_text() == "{not json"
    finally:
        default.unlink()
    assert not Path(discovery._NO_CACHE_FILE).parent.is_dir()

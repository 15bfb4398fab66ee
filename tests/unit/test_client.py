"""The client's verbs, against a real ApiClient whose ``call_api`` is mocked: each sends the method, path,
query, content type and body it should, is retried only when idempotent, and raises the typed errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from k8s_step_operator.kube import errors, retry
from k8s_step_operator.kube.client import APPLY_CONTENT_TYPE, PATCH_CONTENT_TYPES, Client

from ..api_fakes import refusal

CM = "/api/v1/namespaces/ml/configmaps"


class Resp:
    """What ``call_api(..., _preload_content=False)`` returns: the raw response."""

    def __init__(self, payload: Any = None, lines: list[bytes] | None = None) -> None:
        self.data = json.dumps(payload).encode() if payload is not None else b""
        self.lines = lines or []
        self.released = False

    def release_conn(self) -> None:
        self.released = True

    def stream(self, amt: Any = None, decode_content: bool = False) -> Any:
        return iter(self.lines)


@pytest.fixture
def api(mocker: Any) -> Any:
    api = k8s.ApiClient(k8s.Configuration(host="https://fake"))
    mocker.patch.object(api, "call_api", return_value=Resp({"metadata": {"name": "a"}}))
    mocker.patch("k8s_step_operator.kube.retry.time.sleep")
    return api


def sent(api: Any, index: int = -1) -> dict[str, Any]:
    """The request of call number ``index``: method, path, query, content type, body, timeout."""
    call = api.call_api.call_args_list[index]
    path, method = call.args
    return {
        "method": method,
        "path": path,
        "query": dict(call.kwargs["query_params"]),
        "content_type": call.kwargs["header_params"].get("Content-Type"),
        "body": call.kwargs["body"],
        "timeout": call.kwargs["_request_timeout"],
    }


def test_get_and_list(api: Any) -> None:
    assert Client(api).get(f"{CM}/a") == {"metadata": {"name": "a"}}
    assert sent(api) == {
        "method": "GET", "path": f"{CM}/a", "query": {}, "content_type": None, "body": None, "timeout": 30.0
    }
    api.call_api.return_value = Resp({"items": [{"metadata": {"name": "a"}}], "metadata": {"resourceVersion": "7"}})
    items, version = Client(api, timeout=5).list(CM, {"labelSelector": "app=x"})
    assert (items, version) == ([{"metadata": {"name": "a"}}], "7")
    assert sent(api)["query"] == {"labelSelector": "app=x"} and sent(api)["timeout"] == 5


def test_create_and_its_dry_run(api: Any) -> None:
    body = {"metadata": {"name": "a"}}
    Client(api).create(CM, body)
    assert sent(api) == {
        "method": "POST", "path": CM, "query": {}, "content_type": "application/json", "body": body, "timeout": 30.0
    }
    Client(api).create(CM, body, dry_run=True)
    assert sent(api)["query"] == {"dryRun": "All"}


def test_replace_is_a_put(api: Any) -> None:
    body = {"metadata": {"name": "a", "resourceVersion": "3"}}
    Client(api).replace(f"{CM}/a", body)
    assert (sent(api)["method"], sent(api)["path"], sent(api)["body"]) == ("PUT", f"{CM}/a", body)


@pytest.mark.parametrize("flavour", ["merge", "strategic", "json"])
def test_patch_sends_the_flavours_content_type(api: Any, flavour: str) -> None:
    body: Any = [{"op": "add", "path": "/data/x", "value": "1"}] if flavour == "json" else {"data": {"x": "1"}}
    Client(api).patch(f"{CM}/a", body, flavour=flavour)
    assert sent(api)["method"] == "PATCH"
    assert sent(api)["content_type"] == PATCH_CONTENT_TYPES[flavour]
    assert sent(api)["body"] == body
    assert PATCH_CONTENT_TYPES == {
        "merge": "application/merge-patch+json",
        "strategic": "application/strategic-merge-patch+json",
        "json": "application/json-patch+json",
    }


def test_apply_is_a_server_side_apply_patch(api: Any) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}
    Client(api).apply(f"{CM}/a", body, field_manager="me")
    assert sent(api)["content_type"] == APPLY_CONTENT_TYPE == "application/apply-patch+yaml"
    assert sent(api)["query"] == {"fieldManager": "me", "force": "false"}
    Client(api).apply(f"{CM}/a", body, field_manager="me", force=True, dry_run=True)
    assert sent(api)["query"] == {"fieldManager": "me", "force": "true", "dryRun": "All"}


def test_delete_options(api: Any) -> None:
    Client(api).delete(f"{CM}/a")
    assert (sent(api)["method"], sent(api)["body"]) == ("DELETE", None)
    Client(api).delete(f"{CM}/a", propagation="Foreground", uid="u-1", dry_run=True)
    assert sent(api)["body"] == {
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "propagationPolicy": "Foreground",
        "preconditions": {"uid": "u-1"},
        "dryRun": ["All"],
    }
    assert sent(api)["content_type"] == "application/json"


def test_log_lines_stream_a_container(api: Any) -> None:
    api.call_api.return_value = Resp(lines=[b"2026-01-01T00:00:00Z a\n2026", b"-01-01T00:00:01Z b\n"])
    lines = Client(api).log_lines("ml", "p", container="main", follow=True, timestamps=True, since_time="2026-01-01T00:00:00Z")
    assert list(lines) == [b"2026-01-01T00:00:00Z a", b"2026-01-01T00:00:01Z b"]
    assert sent(api)["path"] == "/api/v1/namespaces/ml/pods/p/log"
    assert sent(api)["query"] == {
        "container": "main", "follow": "true", "timestamps": "true", "sinceTime": "2026-01-01T00:00:00Z"
    }
    assert sent(api)["timeout"] == (10, None)
    assert api.call_api.return_value.released


def test_open_watch_asks_for_bookmarks_from_a_version(api: Any) -> None:
    resp = Client(api).open_watch(CM, "5", {"fieldSelector": "metadata.name=a"}, server_timeout=60)
    assert resp is api.call_api.return_value  # the stream itself, for rest.watch_events and shutdown()
    assert sent(api)["query"] == {
        "fieldSelector": "metadata.name=a",
        "watch": "true",
        "resourceVersion": "5",
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "60",
    }
    assert sent(api)["timeout"] == (10.0, 90)


# ------------------------------------------------------------------ typed errors
@pytest.mark.parametrize(
    "code, reason, cls",
    [(404, "NotFound", errors.NotFound), (409, "AlreadyExists", errors.AlreadyExists),
     (409, "Conflict", errors.Conflict), (403, "Forbidden", errors.Forbidden), (410, "Expired", errors.Gone)],
)
def test_every_verb_raises_the_typed_error(api: Any, code: int, reason: str, cls: type) -> None:
    api.call_api.side_effect = refusal(code, reason)
    kube = Client(api)
    calls = [
        lambda: kube.get(f"{CM}/a"),
        lambda: kube.list(CM),
        lambda: kube.create(CM, {}),
        lambda: kube.replace(f"{CM}/a", {}),
        lambda: kube.patch(f"{CM}/a", {}),
        lambda: kube.apply(f"{CM}/a", {}, field_manager="me"),
        lambda: kube.delete(f"{CM}/a"),
        lambda: kube.log_lines("ml", "p"),
        lambda: kube.open_watch(CM, "1"),
    ]
    for call in calls:
        with pytest.raises(cls) as info:
            call()
        assert type(info.value) is cls and info.value.message == "refused" and info.value.status_reason == reason


def test_plain_client_exceptions_become_typed(mocker: Any) -> None:
    """Whatever sends the request (a test's fake of rest.request, too), the client raises the typed error."""
    mocker.patch("k8s_step_operator.kube.rest.request", side_effect=ApiException(status=404, reason="Not Found"))
    with pytest.raises(errors.NotFound):
        Client(None).get("/x")


# ------------------------------------------------------------------ retries
def test_idempotent_verbs_are_retried_and_the_others_are_not(api: Any) -> None:
    ok = Resp({"metadata": {"name": "a"}})
    kube = Client(api)
    for verb in (
        lambda: kube.get(f"{CM}/a"),
        lambda: kube.apply(f"{CM}/a", {}, field_manager="me"),
        lambda: kube.delete(f"{CM}/a"),
        lambda: kube.patch(f"{CM}/a", {}, flavour="merge"),
        lambda: kube.patch(f"{CM}/a", {}, flavour="strategic"),
    ):
        api.call_api.reset_mock()
        api.call_api.side_effect = [refusal(503, "ServiceUnavailable"), ProtocolError("reset"), ok]
        assert verb() == {"metadata": {"name": "a"}}
        assert api.call_api.call_count == 3
    for verb in (
        lambda: kube.create(CM, {}),
        lambda: kube.replace(f"{CM}/a", {}),
        lambda: kube.patch(f"{CM}/a", [], flavour="json"),
    ):
        api.call_api.reset_mock()
        api.call_api.side_effect = [refusal(503, "ServiceUnavailable"), ok]
        with pytest.raises(errors.ApiError):
            verb()
        assert api.call_api.call_count == 1
    api.call_api.reset_mock()
    api.call_api.side_effect = [refusal(503, "ServiceUnavailable"), ok]
    assert kube.create(CM, {}, retry=True) == {"metadata": {"name": "a"}}  # the caller's choice


def test_refusals_and_a_client_without_policy_are_not_retried(api: Any) -> None:
    api.call_api.side_effect = refusal(404, "NotFound")
    with pytest.raises(errors.NotFound):
        Client(api).get("/x")
    assert api.call_api.call_count == 1
    api.call_api.reset_mock()
    api.call_api.side_effect = refusal(503, "ServiceUnavailable")
    with pytest.raises(errors.ApiError):
        Client(api, policy=None).get("/x")
    assert api.call_api.call_count == 1
    api.call_api.reset_mock()
    with pytest.raises(errors.ApiError):
        Client(api, policy=retry.RetryPolicy(max_retries=2)).get("/x")
    assert api.call_api.call_count == 3


def test_an_ssl_failure_is_the_clients_error_not_its_attribute_error(mocker: Any) -> None:
    """The client raises ``ApiException(status=0)`` for an SSL error and then trips over its missing
    body (``e.body.decode``); the request raises the typed error with the SSL reason instead."""
    from kubernetes.client.exceptions import ApiException

    from k8s_step_operator.kube import rest
    from k8s_step_operator.kube.errors import ApiError

    api = k8s.ApiClient(k8s.Configuration(host="https://fake"))
    reason = "SSLError\n[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
    mocker.patch.object(api, "request", side_effect=ApiException(status=0, reason=reason))
    with pytest.raises(ApiError, match="CERTIFICATE_VERIFY_FAILED") as caught:
        rest.request(api, "GET", "/version")
    assert caught.value.status == 0

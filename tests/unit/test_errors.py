"""Typed API errors: the class follows the HTTP status (and Status.reason for AlreadyExists), the server's
Status is readable from it, and every request raises them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from k8s_step_operator.kube import errors, rest

RBAC_DENIAL = (
    'pods is forbidden: User "system:serviceaccount:ml:runner" cannot list resource "pods" in API group "" '
    'in the namespace "ml"'
)


def status_body(code: int, reason: str, message: str, **details: Any) -> str:
    return json.dumps(
        {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
         "message": message, "details": details}
    )


def raw(code: int, reason: str = "", message: str = "", **details: Any) -> ApiException:
    exc = ApiException(status=code, reason="HTTP reason")
    exc.body = status_body(code, reason, message, **details) if reason or message else None
    exc.headers = {"Content-Type": "application/json"}
    return exc


@pytest.mark.parametrize(
    "code, reason, cls",
    [
        (400, "BadRequest", errors.BadRequest),
        (401, "Unauthorized", errors.Unauthorized),
        (403, "Forbidden", errors.Forbidden),
        (404, "NotFound", errors.NotFound),
        (409, "Conflict", errors.Conflict),
        (409, "AlreadyExists", errors.AlreadyExists),
        (410, "Expired", errors.Gone),
        (415, "UnsupportedMediaType", errors.UnsupportedMediaType),
        (422, "Invalid", errors.Invalid),
        (500, "InternalError", errors.ApiError),
        (429, "TooManyRequests", errors.ApiError),
    ],
)
def test_the_class_follows_the_status(code: int, reason: str, cls: type) -> None:
    error = errors.from_api_exception(raw(code, reason, "why"))
    assert type(error) is cls
    assert isinstance(error, ApiException)  # `except ApiException` keeps working
    assert (error.status, error.reason, error.status_reason, error.message) == (code, "HTTP reason", reason, "why")
    assert error.headers == {"Content-Type": "application/json"}


def test_already_exists_is_a_conflict_told_apart_by_the_status_reason_only() -> None:
    taken = errors.from_api_exception(raw(409, "AlreadyExists", 'configmaps "a" already exists', name="a"))
    stale = errors.from_api_exception(raw(409, "Conflict", "the object has been modified"))
    bare = errors.from_api_exception(ApiException(status=409, reason="Conflict"))  # no body at all
    assert isinstance(taken, errors.Conflict) and isinstance(taken, errors.AlreadyExists)
    assert type(stale) is errors.Conflict and type(bare) is errors.Conflict
    assert taken.details == {"name": "a"}


def test_a_typed_error_is_returned_as_it_is() -> None:
    error = errors.NotFound(reason="Not Found")
    assert errors.from_api_exception(error) is error
    assert error.status == 404 and error.server_status == {} and error.details == {}
    assert error.message == "Not Found"


def test_invalid_carries_the_causes() -> None:
    causes = [{"reason": "FieldValueRequired", "field": "spec.containers"}]
    error = errors.from_api_exception(raw(422, "Invalid", "Pod is invalid", kind="Pod", causes=causes))
    assert isinstance(error, errors.Invalid)
    assert error.details["causes"] == causes


def test_forbidden_names_the_missing_permission_for_rbac_only() -> None:
    denied = errors.from_api_exception(raw(403, "Forbidden", RBAC_DENIAL))
    assert isinstance(denied, errors.Forbidden)
    assert denied.rbac_text("list", "pods", "ml") == (
        "forbidden: needs list on pods in namespace ml for system:serviceaccount:ml:runner — grant it with a "
        f"Role/ClusterRole binding. Server said: {RBAC_DENIAL}"
    )
    assert denied.rbac_text("get", "nodes", None).startswith("forbidden: needs get on nodes (cluster-scoped) for ")
    admission = errors.from_api_exception(raw(403, "Forbidden", 'pods "x" is forbidden: violates PodSecurity'))
    assert isinstance(admission, errors.Forbidden) and admission.rbac_text("create", "pods", "ml") is None
    # the function form, for plain client exceptions too
    assert errors.forbidden_text(raw(403, "Forbidden", RBAC_DENIAL), "list", "pods", "ml") == denied.rbac_text(
        "list", "pods", "ml"
    )
    assert errors.forbidden_text(raw(404, "NotFound", RBAC_DENIAL), "list", "pods", "ml") is None


def test_api_message_reads_the_status_message_or_falls_back() -> None:
    assert errors.api_message(raw(404, "NotFound", 'pods "x" not found')) == 'pods "x" not found'
    plain = ApiException(status=502, reason="Bad Gateway")
    plain.body = b"<html>bad gateway</html>\n"
    assert errors.api_message(plain) == "<html>bad gateway</html>"
    assert errors.api_message(ApiException(status=503)) == "HTTP 503"


def test_a_stream_status_becomes_its_typed_error() -> None:
    gone = errors.from_status({"code": 410, "reason": "Expired", "message": "too old resource version: 1 (5)"})
    assert isinstance(gone, errors.Gone) and gone.message == "too old resource version: 1 (5)"
    assert gone.status_reason == "Expired"
    other = errors.from_status({})
    assert type(other) is errors.ApiError and (other.status, other.reason) == (500, "watch error")


# ----------------------------------------------------------------- every request raises them
@pytest.mark.parametrize(
    "code, reason, cls",
    [(404, "NotFound", errors.NotFound), (409, "AlreadyExists", errors.AlreadyExists), (403, "Forbidden", errors.Forbidden),
     (410, "Expired", errors.Gone)],
)
def test_a_refused_request_raises_the_typed_error(mocker: Any, code: int, reason: str, cls: type) -> None:
    api = client.ApiClient(client.Configuration(host="https://fake"))
    mocker.patch.object(api, "call_api", side_effect=raw(code, reason, "refused"))
    with pytest.raises(cls) as info:
        rest.request(api, "GET", "/api/v1/namespaces/ml/pods/x")
    assert info.value.message == "refused" and info.value.__cause__ is None

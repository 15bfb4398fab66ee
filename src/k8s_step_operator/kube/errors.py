"""Typed API errors: one class per HTTP status we act on, each carrying the server's ``Status``.

Every request (``rest.request``) raises an :class:`ApiError` when the server refuses it:
:class:`NotFound` (404), :class:`Conflict` (409; :class:`AlreadyExists` when the Status reason
says so), :class:`Forbidden` (403; :meth:`Forbidden.rbac_text` says which permission is
missing), :class:`Gone` (410), :class:`Invalid` (422), :class:`BadRequest` (400),
:class:`Unauthorized` (401), :class:`UnsupportedMediaType` (415), else :class:`ApiError`
itself. They subclass the client's ``ApiException``, so ``except ApiException`` and
``exc.status`` keep working; code outside ``kube/`` catches the classes and never compares
status numbers or searches an error's text.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from kubernetes.client.exceptions import ApiException

__all__ = [
    "AlreadyExists",
    "ApiError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "NotFound",
    "Unauthorized",
    "UnsupportedMediaType",
    "api_message",
    "forbidden_text",
    "from_api_exception",
    "from_status",
]

_USER_RE = re.compile(r'User "([^"]+)"')
_RBAC_DENIAL_RE = re.compile(r"cannot [\w-]+ resource")


def _status_object(body: Any) -> dict[str, Any]:
    """The ``Status`` object of an error body (a dict, or {} when the body is not one)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, dict):
        return body
    if not body:
        return {}
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class ApiError(ApiException):
    """The API server refused a request; ``status`` is the HTTP status, ``body`` its response.

    ``message``, ``status_reason`` (``NotFound``, ``AlreadyExists``, ``Conflict``, ``Forbidden``,
    ``Invalid``, ``Expired``, ...) and ``details`` are read from the server's ``Status`` object.
    """

    code: ClassVar[int | None] = None  # the HTTP status this class stands for

    def __init__(
        self, status: int | None = None, reason: str | None = None, *, body: Any = None, headers: Any = None
    ) -> None:
        super().__init__(status=status if status is not None else self.code, reason=reason)
        self.body = body
        self.headers = headers

    @property
    def server_status(self) -> dict[str, Any]:
        """The ``Status`` object the server sent ({} when the body was none)."""
        return _status_object(self.body)

    @property
    def message(self) -> str:
        """The server's ``Status.message`` (or the HTTP reason); see :func:`api_message`."""
        return api_message(self)

    @property
    def status_reason(self) -> str:
        """``Status.reason``: why, in one CamelCase word (empty when the server gave none)."""
        return str(self.server_status.get("reason") or "")

    @property
    def details(self) -> dict[str, Any]:
        """``Status.details``: the object's name, group, kind and, for 422, its ``causes``."""
        details = self.server_status.get("details")
        return details if isinstance(details, dict) else {}


class BadRequest(ApiError):
    """400: a malformed request, or (for a log) a container that has not started yet."""

    code = 400


class Unauthorized(ApiError):
    """401: the credentials were not accepted (expired token, wrong certificate)."""

    code = 401


class Forbidden(ApiError):
    """403: RBAC (or an admission plugin such as PodSecurity) refused the request."""

    code = 403

    def rbac_text(self, verb: str, resource: str, namespace: str | None) -> str | None:
        """``forbidden: needs <verb> on <resource> in namespace <ns> for <user> — …`` for an RBAC denial.

        None when another 403 (PodSecurity admission, for one): its message is readable as it is.
        """
        message = self.message
        if not _RBAC_DENIAL_RE.search(message):
            return None
        where = f"in namespace {namespace}" if namespace else "(cluster-scoped)"
        user = _USER_RE.search(message)
        who = f" for {user.group(1)}" if user else ""
        return (
            f"forbidden: needs {verb} on {resource} {where}{who} — grant it with a Role/ClusterRole binding. "
            f"Server said: {message}"
        )


class NotFound(ApiError):
    """404: no such object (or no such API path)."""

    code = 404


class Conflict(ApiError):
    """409: a stale resourceVersion, a failed precondition, a server-side apply conflict, or a name taken."""

    code = 409


class AlreadyExists(Conflict):
    """409 with ``Status.reason`` ``AlreadyExists``: a create found the name taken."""


class Gone(ApiError):
    """410: a watch's or list's resourceVersion is too old; relist and start again."""

    code = 410


class UnsupportedMediaType(ApiError):
    """415: the server does not take this content type here (strategic merge on a custom resource)."""

    code = 415


class Invalid(ApiError):
    """422: the object does not validate; ``details["causes"]`` names the fields."""

    code = 422


_TYPED = (BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Gone, UnsupportedMediaType, Invalid)
_BY_STATUS: dict[int, type[ApiError]] = {cls.code: cls for cls in _TYPED if cls.code is not None}


def _error_class(status: int | None, status_reason: str) -> type[ApiError]:
    if status == 409 and status_reason == "AlreadyExists":
        return AlreadyExists
    return _BY_STATUS.get(status or 0, ApiError)


def from_api_exception(exc: ApiException) -> ApiError:
    """The typed error for a client ``ApiException`` (the same object when it already is one)."""
    if isinstance(exc, ApiError):
        return exc
    status = exc.status
    body = getattr(exc, "body", None)
    cls = _error_class(status, str(_status_object(body).get("reason") or ""))
    return cls(status, exc.reason, body=body, headers=getattr(exc, "headers", None))


def from_status(status: dict[str, Any], default_code: int = 500) -> ApiError:
    """The typed error for a ``Status`` object the server sent in a stream (a watch's ERROR event)."""
    code = status.get("code") or default_code
    message = status.get("message") or status.get("reason") or "watch error"
    cls = _error_class(code, str(status.get("reason") or ""))
    return cls(code, message, body=json.dumps(status))


def api_message(exc: ApiException) -> str:
    """The server's ``Status.message`` (or the reason) of an API error."""
    body = getattr(exc, "body", None)
    if body:
        try:
            data = json.loads(body)
            if isinstance(data, dict) and data.get("message"):
                return str(data["message"])
        except (TypeError, ValueError):
            text = body.decode() if isinstance(body, bytes) else str(body)
            return text.strip()[:500]
    return str(exc.reason or f"HTTP {exc.status}")


def forbidden_text(exc: ApiException, verb: str, resource: str, namespace: str | None) -> str | None:
    """``forbidden: needs <verb> on <resource> …`` for an RBAC 403, else None (see :meth:`Forbidden.rbac_text`)."""
    error = from_api_exception(exc)
    return error.rbac_text(verb, resource, namespace) if isinstance(error, Forbidden) else None

"""Errors raised by resource, volume and snapshot steps at run time, and API-error translation."""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client.exceptions import ApiException

from ..kube import errors as api_errors
from ..kube.errors import api_message

__all__ = [
    "ConditionFailed",
    "Forbidden",
    "ObjectDeleted",
    "ResourceStepError",
    "WaitTimeout",
    "api_message",
    "describe_status",
    "translate_api_error",
]

_STATUS_LIMIT = 2000


class ResourceStepError(RuntimeError):
    """A resource, volume or snapshot step failed on the cluster."""


class Forbidden(ResourceStepError):
    """The credentials lack an RBAC permission (HTTP 403)."""


class ConditionFailed(ResourceStepError):
    """The failure condition matched, or a fail-fast Warning event arrived.

    ``what``: the object (``Kind ns/name``); ``verdict``: why it failed, without the last-seen status;
    ``event_reason``: the Warning event's reason, when one ended the wait.
    """

    def __init__(
        self, message: str, event_reason: str | None = None, *, what: str | None = None, verdict: str | None = None
    ) -> None:
        super().__init__(message)
        self.event_reason = event_reason
        self.what = what
        self.verdict = verdict


class WaitTimeout(ResourceStepError):
    """The success condition did not match before the timeout."""


class ObjectDeleted(ResourceStepError):
    """The object was deleted while the step waited on it."""


def translate_api_error(exc: ApiException, verb: str, resource: str, namespace: str | None, what: str) -> ResourceStepError:
    """A step error for an API failure; 403 says which permission is missing and for whom."""
    error = api_errors.from_api_exception(exc)
    if isinstance(error, api_errors.Forbidden):
        text = error.rbac_text(verb, resource, namespace)
        return Forbidden(text or f"forbidden: {verb} on {resource}: {error.message}")
    return ResourceStepError(f"{what}: {verb} failed (HTTP {error.status}): {error.message}")


def describe_status(obj: Any) -> str:
    """The last-seen ``.status`` as compact JSON (or the object when it has no status), shortened."""
    if not isinstance(obj, dict):
        return "nothing seen"
    if "status" in obj:
        text = "status: " + json.dumps(obj.get("status"), sort_keys=True, default=str)
    else:
        shown = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
        text = "object has no status; last-seen content: " + json.dumps(shown, sort_keys=True, default=str)
    if len(text) > _STATUS_LIMIT:
        text = text[:_STATUS_LIMIT] + "…"
    return text

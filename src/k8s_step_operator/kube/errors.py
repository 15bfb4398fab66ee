"""Readable API errors: the server's message, and which RBAC permission a 403 lacks."""

from __future__ import annotations

import json
import re

from kubernetes.client.exceptions import ApiException

_USER_RE = re.compile(r'User "([^"]+)"')
_RBAC_DENIAL_RE = re.compile(r"cannot [\w-]+ resource")


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
    """``forbidden: needs <verb> on <resource> in namespace <ns> for <user>`` for an RBAC 403, else None.

    Other 403s (PodSecurity admission, for one) keep the server's own message.
    """
    message = api_message(exc)
    if exc.status != 403 or not _RBAC_DENIAL_RE.search(message):
        return None
    where = f"in namespace {namespace}" if namespace else "(cluster-scoped)"
    user = _USER_RE.search(message)
    who = f" for {user.group(1)}" if user else ""
    return f"forbidden: needs {verb} on {resource} {where}{who} — grant it with a Role/ClusterRole binding. Server said: {message}"

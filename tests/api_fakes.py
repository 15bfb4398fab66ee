"""What the API server answers, for unit tests that fake the transport."""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException


def refusal(code: int, reason: str, message: str = "refused") -> ApiException:
    """An ``ApiException`` as the client raises it for a refusal: HTTP ``code`` with a ``Status`` body."""
    exc = ApiException(status=code, reason="HTTP reason")
    exc.body = json.dumps({"kind": "Status", "code": code, "reason": reason, "message": message})
    return exc

"""What a node may read about its pods: secrets, config maps, claims, volumes, service-account tokens."""

from __future__ import annotations

import time

from .apiclient import ApiClient, ApiError, retry
from .timeutil import parse_rfc3339


class ObjectReadError(Exception):
    """Reading a referenced object failed for a reason other than 'not found'."""


class ApiObjects:
    """Reads through the node credential (so the Node authorizer's rules are the ones tested)."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    def _get(self, path: str) -> dict | None:
        try:
            return retry(lambda: self.api.get(path), attempts=3, what=f"GET {path}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise ObjectReadError(exc.message or str(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - connection trouble, reported as a retryable error
            raise ObjectReadError(str(exc)) from exc

    def secret(self, namespace: str, name: str) -> dict | None:
        return self._get(f"/api/v1/namespaces/{namespace}/secrets/{name}")

    def configmap(self, namespace: str, name: str) -> dict | None:
        return self._get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")

    def pvc(self, namespace: str, name: str) -> dict | None:
        return self._get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}")

    def pv(self, name: str) -> dict | None:
        return self._get(f"/api/v1/persistentvolumes/{name}")

    def token(
        self, pod: dict, audience: str | None, expiration: int
    ) -> tuple[str, float, float]:
        """(token, issued at, expires at) from the TokenRequest API, bound to ``pod``."""
        meta = pod["metadata"]
        sa = pod["spec"].get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": expiration,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
            },
        }
        path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{sa}/token"
        issued = time.time()
        try:
            answer = retry(lambda: self.api.post(path, body), attempts=3, what="TokenRequest")
        except ApiError as exc:
            raise ObjectReadError(f"failed to fetch token: {exc.message or exc}") from exc
        except Exception as exc:  # noqa: BLE001
            raise ObjectReadError(f"failed to fetch token: {exc}") from exc
        status = answer["status"]
        return status["token"], issued, parse_rfc3339(status["expirationTimestamp"])

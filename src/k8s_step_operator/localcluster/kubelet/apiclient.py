"""A small thread-safe Kubernetes REST client on urllib3: JSON in, JSON out, watch streams.

The agent talks to the apiserver with plain dicts (no generated models), so what
it sends is exactly what the kubelet would send.
"""

from __future__ import annotations

import base64
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import urlencode

import urllib3
import yaml

log = logging.getLogger(__name__)
T = TypeVar("T")

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer from the apiserver."""

    def __init__(self, status: int, body: Any, method: str, path: str) -> None:
        self.status = status
        self.body = body if isinstance(body, dict) else {"message": str(body)}
        super().__init__(f"{method} {path}: {status} {self.body.get('reason', '')}: {self.body.get('message', '')}")

    @property
    def reason(self) -> str:
        return str(self.body.get("reason", ""))

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: connection trouble, 429, 5xx."""
    if isinstance(exc, ApiError):
        return exc.status == 429 or exc.status >= 500
    return isinstance(exc, (urllib3.exceptions.HTTPError, OSError, ValueError))


def retry(call: Callable[[], T], attempts: int = 6, first_delay: float = 0.1, what: str = "request") -> T:
    """Run ``call``; retry transient failures with exponential back-off."""
    delay = first_delay
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - filtered below
            if attempt == attempts - 1 or not is_transient(exc):
                raise
            log.debug("%s failed (%s); retrying in %.1fs", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


def _materialise(data_b64: str, suffix: str) -> str:
    """Write inline (``*-data``) kubeconfig material to a private file; return its path."""
    fd, path = tempfile.mkstemp(prefix="k8sso-kubeconfig-", suffix=f".{suffix}")
    with open(fd, "wb") as fh:
        fh.write(base64.b64decode(data_b64))
    return path


class ApiClient:
    """Kubernetes REST calls with the client certificate of one kubeconfig."""

    def __init__(self, kubeconfig: Path | str) -> None:
        doc = yaml.safe_load(Path(kubeconfig).read_text())
        ctx_name = doc.get("current-context")
        ctx = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in doc["users"] if u["name"] == ctx["user"])
        self.server = cluster["server"].rstrip("/")
        ca = cluster.get("certificate-authority") or _materialise(cluster["certificate-authority-data"], "ca")
        cert = user.get("client-certificate") or _materialise(user["client-certificate-data"], "crt")
        key = user.get("client-key") or _materialise(user["client-key-data"], "key")
        self.ca_file = ca
        self._pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=64,
            block=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca,
            cert_file=cert,
            key_file=key,
            retries=False,
        )

    def _url(self, path: str, query: dict[str, Any] | None) -> str:
        q = {k: v for k, v in (query or {}).items() if v is not None}
        return self.server + path + ("?" + urlencode(q) if q else "")

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        """One call; returns the decoded JSON body or raises ApiError."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        resp = self._pool.request(
            method, self._url(path, query), body=data, headers=headers, timeout=urllib3.Timeout(connect=5, read=timeout)
        )
        text = resp.data.decode("utf-8", "replace")
        try:
            decoded: Any = json.loads(text) if text else {}
        except ValueError:
            decoded = text
        if resp.status >= 300:
            raise ApiError(resp.status, decoded, method, path)
        return decoded

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body)

    def patch(self, path: str, body: Any, content_type: str = STRATEGIC) -> Any:
        return self.request("PATCH", path, body, content_type=content_type)

    def delete(self, path: str, body: Any = None) -> Any:
        return self.request("DELETE", path, body)

    def watch(self, path: str, query: dict[str, Any], timeout: float = 330.0) -> Iterator[dict]:
        """Yield watch events ({type, object}) until the server closes the stream."""
        q = dict(query, watch="true")
        resp = self._pool.request(
            "GET",
            self._url(path, q),
            headers={"Accept": "application/json"},
            preload_content=False,
            timeout=urllib3.Timeout(connect=5, read=timeout),
        )
        try:
            if resp.status >= 300:
                raise ApiError(resp.status, resp.data.decode("utf-8", "replace"), "WATCH", path)
            for line in resp:
                line = line.strip()
                if line:
                    yield json.loads(line)
        finally:
            resp.release_conn()


def pod_path(namespace: str, name: str, sub: str = "") -> str:
    """The REST path of a pod (or one of its subresources)."""
    return f"/api/v1/namespaces/{namespace}/pods/{name}" + (f"/{sub}" if sub else "")

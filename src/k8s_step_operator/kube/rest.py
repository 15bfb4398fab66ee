"""Raw JSON requests through an ApiClient, for any kind and for streaming (watch, logs).

A refusal raises the typed error of :mod:`.errors` (``NotFound``, ``Conflict``, ``Gone``, ...).
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .content_types import JSON
from .errors import from_api_exception, from_status


def request(
    api: client.ApiClient,
    method: str,
    path: str,
    query: dict[str, Any] | None = None,
    body: Any = None,
    content_type: str | None = None,
    timeout: Any = None,
    stream: bool = False,
) -> Any:
    """Send one request; returns parsed JSON, or the raw response when ``stream``.

    Raises the :mod:`.errors` class of the server's refusal (an ``ApiException``).
    """
    headers = {"Accept": JSON}
    if body is not None:
        headers["Content-Type"] = content_type or JSON
    params = [(k, _param(v)) for k, v in (query or {}).items() if v is not None]
    try:
        data = api.call_api(
            path,
            method,
            query_params=params,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
            _request_timeout=timeout,
        )
    except ApiException as exc:
        raise from_api_exception(exc) from None
    except AttributeError as exc:
        # the client fails on its own error path when a transport error has no response body (an SSL
        # error, e.g. a server certificate the CA does not sign: ``e.body.decode``); raise what it meant to
        if isinstance(exc.__context__, ApiException):
            raise from_api_exception(exc.__context__) from None
        raise
    if stream:
        return data
    try:
        raw = data.data
    finally:
        data.release_conn()
    return json.loads(raw) if raw else None


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def iter_lines(resp: Any) -> Iterator[bytes]:
    """Yield complete lines from a chunked streaming response as they arrive."""
    buffer = b""
    try:
        for chunk in resp.stream(amt=None, decode_content=False):
            buffer += chunk if isinstance(chunk, bytes) else chunk.encode()
            while True:
                cut = buffer.find(b"\n")
                if cut < 0:
                    break
                line, buffer = buffer[:cut], buffer[cut + 1 :]
                yield line
        if buffer:
            yield buffer
    finally:
        resp.release_conn()


def watch_events(resp: Any) -> Iterator[tuple[str, dict]]:
    """Decode a watch response into (type, object) events, BOOKMARKs included.

    An ``ERROR`` event raises the typed error of its ``Status`` (``errors.Gone`` for code 410).
    """
    for line in iter_lines(resp):
        if not line.strip():
            continue
        event = json.loads(line)
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            raise from_status(obj)
        yield kind, obj

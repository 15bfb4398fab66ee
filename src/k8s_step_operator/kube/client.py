"""The one client: the verbs this project uses, over an ``ApiClient`` from any credential source.

Objects are plain JSON (dicts) addressed by path, so any kind works, custom ones included
(``steps/discovery.py`` turns a kind into its path). Every verb sends one request through
:func:`.rest.request`; a refusal raises the typed error of :mod:`.errors`. Idempotent verbs
(GET, LIST, apply, DELETE, merge and strategic patches) are retried on transient failures
with the client's :class:`~.retry.RetryPolicy` (none: never retried); ``retry=`` overrides
that per call. Streams (a watch, a log) are never retried here: their callers resume.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, TypeVar

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from . import content_types, rest, retry
from .errors import Forbidden, from_api_exception

__all__ = ["APPLY_CONTENT_TYPE", "PATCH_CONTENT_TYPES", "Client"]

T = TypeVar("T")
PATCH_CONTENT_TYPES = content_types.PATCH
APPLY_CONTENT_TYPE = content_types.APPLY_PATCH


class Client:
    """Requests to one API server: ``timeout`` (seconds, or (connect, read)) per request, ``policy`` for retries."""

    def __init__(
        self, api: k8s.ApiClient, *, timeout: Any = 30.0, policy: retry.RetryPolicy | None = retry.DEFAULT,
        on_forbidden: Callable[[Forbidden, str, str, dict[str, Any] | None], Exception | None] | None = None,
    ) -> None:
        self.api = api
        self.timeout = timeout
        self.policy = policy
        # a caller's own wording of a denial (method, path, query in hand): the error raised instead, or None
        self.on_forbidden = on_forbidden

    # ------------------------------------------------------------------ plumbing
    def _typed(self, send: Callable[[], T]) -> T:
        try:
            return send()
        except ApiException as exc:
            raise from_api_exception(exc) from None

    def _send(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: Any = None,
        *,
        content_type: str | None = None,
        retry_it: bool,
    ) -> Any:
        def once() -> Any:
            return self._typed(
                lambda: rest.request(
                    self.api, method, path, query, body=body, content_type=content_type, timeout=self.timeout
                )
            )

        try:
            if self.policy is None or not retry_it:
                return once()
            return retry.run(once, self.policy)
        except Forbidden as exc:
            instead = self.on_forbidden(exc, method, path, query) if self.on_forbidden else None
            if instead is not None:
                raise instead from exc
            raise

    # --------------------------------------------------------------------- verbs
    def get(self, path: str, query: dict[str, Any] | None = None, *, retry: bool = True) -> Any:
        """GET ``path`` (an object, a collection, discovery, ``/version``)."""
        return self._send("GET", path, query, retry_it=retry)

    def list(self, path: str, query: dict[str, Any] | None = None, *, retry: bool = True) -> tuple[list[dict], str]:
        """LIST a collection: (items, the list's resourceVersion, where a watch starts)."""
        result = self.get(path, query, retry=retry)
        return result.get("items") or [], result["metadata"]["resourceVersion"]

    def create(self, path: str, body: Any, *, dry_run: bool = False, retry: bool = False) -> Any:
        """POST ``body`` to a collection; ``dry_run``: admission's verdict, nothing stored. Not retried by default."""
        return self._send("POST", path, {"dryRun": "All"} if dry_run else None, body, retry_it=retry)

    def replace(self, path: str, body: Any, *, retry: bool = False) -> Any:
        """PUT the whole object (its ``metadata.resourceVersion`` makes a stale write a ``Conflict``)."""
        return self._send("PUT", path, body=body, retry_it=retry)

    def patch(self, path: str, body: Any, *, flavour: str = "merge", retry: bool | None = None) -> Any:
        """PATCH with a JSON merge, strategic merge or JSON (RFC 6902) patch; a JSON patch is not retried by default."""
        return self._send(
            "PATCH", path, body=body, content_type=PATCH_CONTENT_TYPES[flavour],
            retry_it=flavour != "json" if retry is None else retry,
        )

    def apply(
        self, path: str, body: Any, *, field_manager: str, force: bool = False, dry_run: bool = False, retry: bool = True
    ) -> Any:
        """Server-side apply of ``body`` (the object's path) as ``field_manager``; ``force`` takes conflicting fields."""
        query: dict[str, Any] = {"fieldManager": field_manager, "force": force}
        if dry_run:
            query["dryRun"] = "All"
        return self._send("PATCH", path, query, body, content_type=APPLY_CONTENT_TYPE, retry_it=retry)

    def delete(
        self,
        path: str,
        *,
        propagation: str | None = None,
        uid: str | None = None,
        dry_run: bool = False,
        retry: bool = True,
    ) -> Any:
        """DELETE; ``propagation``: Background, Foreground or Orphan; ``uid``: only that object (else ``Conflict``)."""
        options: dict[str, Any] = {}
        if propagation:
            options["propagationPolicy"] = propagation
        if uid:
            options["preconditions"] = {"uid": uid}
        if dry_run:
            options["dryRun"] = ["All"]
        body = {"kind": "DeleteOptions", "apiVersion": "v1", **options} if options else None
        return self._send("DELETE", path, body=body, retry_it=retry)

    # ------------------------------------------------------------------- streams
    def log_lines(
        self,
        namespace: str,
        pod: str,
        *,
        container: str | None = None,
        follow: bool = False,
        timestamps: bool = False,
        since_time: str | None = None,
        tail_lines: int | None = None,
        connect_timeout: float = 10,
        on_open: Callable[[Any], None] | None = None,
    ) -> Iterator[bytes]:
        """A container's log, line by line as it comes (``follow``: until the container ends; ``tail_lines``:
        only the last ones).

        The request is sent at once (a refusal raises here); the read has no timeout. ``on_open`` gets
        the streaming response first: ``shutdown()`` on it ends the read early, from another thread.
        """
        query = {"container": container, "follow": follow, "timestamps": timestamps, "sinceTime": since_time,
                 "tailLines": tail_lines}
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        resp = self._typed(
            lambda: rest.request(self.api, "GET", path, query, timeout=(connect_timeout, None), stream=True)
        )
        if on_open is not None:
            on_open(resp)
        return rest.iter_lines(resp)

    def open_watch(
        self,
        path: str,
        resource_version: str,
        query: dict[str, Any] | None = None,
        server_timeout: int = 60,
        connect_timeout: float = 10.0,
    ) -> Any:
        """Start a watch (with bookmarks) of a collection from ``resource_version``: the streaming response.

        Decode it with :func:`.rest.watch_events`; ``shutdown()`` it to end the watch early.
        Raises ``errors.Gone`` when ``resource_version`` is too old. Only the reflector watches.
        """
        params = dict(query or {})
        params.update(
            watch=True, resourceVersion=resource_version, allowWatchBookmarks=True, timeoutSeconds=server_timeout
        )
        timeout = (connect_timeout, server_timeout + 30)
        return self._typed(lambda: rest.request(self.api, "GET", path, params, timeout=timeout, stream=True))

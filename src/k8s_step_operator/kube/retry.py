"""The one retry policy for Kubernetes API calls: which failures are transient, and the back-off.

``kube.client.Client`` retries its idempotent verbs with it; the reflector's bounded error
policy backs off with it; :func:`call` wraps any other function.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

T = TypeVar("T")
log = logging.getLogger(__name__)

RETRYABLE_STATUS = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry; ``request_timeout`` is passed to each call."""

    max_retries: int = 3
    base_delay: float = 0.2
    max_delay: float = 10.0
    request_timeout: float | None = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Back-off before retry ``attempt`` (1-based); Retry-After wins when larger."""
        backoff = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        backoff *= 0.75 + random.random() / 2  # jitter
        return max(backoff, retry_after or 0.0)


DEFAULT = RetryPolicy()  # 3 retries, 0.2 s doubling up to 10 s, jittered; Retry-After honoured


def is_retryable(exc: BaseException) -> bool:
    """429, 5xx and connection-level errors are transient; 4xx are not."""
    if isinstance(exc, ApiException):
        return exc.status in RETRYABLE_STATUS or exc.status == 0
    return isinstance(exc, (Urllib3Error, ConnectionError, TimeoutError))


def retry_after_seconds(exc: BaseException) -> float | None:
    """The Retry-After header of a 429/503, in seconds, if any."""
    headers = getattr(exc, "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def run(fn: Callable[[], T], policy: RetryPolicy, retryable: Callable[[BaseException], bool] = is_retryable) -> T:
    """``fn()``, called again after each ``retryable`` failure (back-off per ``policy``) until it is not."""
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            attempt += 1
            if not retryable(exc) or attempt > policy.max_retries:
                raise
            wait = policy.delay(attempt, retry_after_seconds(exc))
            log.debug("retrying %s after %s (attempt %d, %.2fs)", getattr(fn, "__name__", fn), exc, attempt, wait)
            time.sleep(wait)


def call(fn: Callable[..., T], *args: object, policy: RetryPolicy = DEFAULT, **kwargs: object) -> T:
    """Call an API function, retrying transient failures per ``policy`` (its ``request_timeout`` passed on)."""
    if policy.request_timeout is not None:
        kwargs.setdefault("_request_timeout", policy.request_timeout)
    return run(lambda: fn(*args, **kwargs), policy)

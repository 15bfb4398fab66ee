"""Helpers that turn arbitrary text into valid Kubernetes names and labels.

Names are never cut silently: whenever text has to be shortened, a hash of
the *original* full text is appended, so two long inputs that differ only at
the tail still produce different names.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Optional

HASH_LEN = 8
_DNS_INVALID = re.compile(r"[^a-z0-9-]+")
_LABEL_INVALID = re.compile(r"[^A-Za-z0-9_.-]+")


def text_hash(text: str, length: int = HASH_LEN) -> str:
    """Short, stable hex digest of ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def _fit(original: str, cleaned: str, max_len: int, strip: str) -> str:
    """Returns ``cleaned`` if it fits, else a shortened form plus a hash."""
    if not cleaned and original:
        return text_hash(original)[:max_len]
    if len(cleaned) <= max_len:
        return cleaned
    digest = text_hash(original)
    keep = max_len - len(digest) - 1
    head = cleaned[: max(keep, 0)].rstrip(strip)
    return f"{head}-{digest}" if head else digest[:max_len]


def dns1123_label(text: str, max_len: int = 63) -> str:
    """Sanitizes ``text`` into a DNS-1123 label of at most ``max_len`` chars.

    Lowercases, replaces each run of invalid characters with ``-`` and trims
    leading/trailing ``-``. If the result is too long it is shortened and
    ``-<hash8>`` of the original text is appended. Text with no usable
    characters becomes its hash.

    Args:
        text: Any text.
        max_len: Maximum length (at most 63 for a valid label).

    Returns:
        A valid DNS-1123 label.
    """
    cleaned = _DNS_INVALID.sub("-", text.lower()).strip("-")
    return _fit(text, cleaned, max_len, "-")


def label_value(text: str) -> str:
    """Sanitizes ``text`` into a valid label value (≤63 chars, case kept).

    Keeps letters, digits, ``-``, ``_`` and ``.``; other runs become ``-``;
    the value starts and ends with a letter or digit. Shortened values end in
    ``-<hash8>`` of the original text. Empty text stays empty.

    Args:
        text: Any text.

    Returns:
        A valid label value.
    """
    cleaned = _LABEL_INVALID.sub("-", text).strip("-_.")
    return _fit(text, cleaned, 63, "-_.")


def zenml_label_value(text: str) -> str:
    """A label value sanitized exactly as ZenML 0.98 does (cut at 63, no hash), for ZenML's own keys."""
    cleaned = _LABEL_INVALID.sub("-", text).strip("._-")[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


def _run_suffix(step_run_id: str, length: int = 10) -> str:
    """Recognizable short id: the UUID's leading hex digits, else a hash."""
    try:
        return uuid.UUID(step_run_id).hex[:length]
    except (ValueError, AttributeError, TypeError):
        return text_hash(step_run_id, length)


def pod_name(
    prefix: Optional[str], pipeline: str, step: str, step_run_id: str
) -> str:
    """Pod name unique per step run, at most 63 characters.

    Shape: ``[<prefix>-]<pipeline>-<step>-<id10>`` where ``id10`` is the
    start of the step run UUID. The readable part is shortened with a hash
    of its full text when needed; 63 (not 253) keeps the pod hostname intact.

    Args:
        prefix: Optional prefix (``job_name_prefix``).
        pipeline: Pipeline name.
        step: Step name.
        step_run_id: ZenML step run id.

    Returns:
        A valid DNS-1123 label usable as a pod name.
    """
    suffix = _run_suffix(step_run_id)
    body_text = "-".join(part for part in (prefix, pipeline, step) if part)
    body = dns1123_label(body_text, max_len=63 - len(suffix) - 1)
    return f"{body}-{suffix}" if body else suffix

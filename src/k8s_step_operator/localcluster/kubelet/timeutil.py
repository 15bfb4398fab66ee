"""Kubernetes time formats: metav1.Time (seconds), MicroTime, and the logs' fixed RFC3339Nano."""

from __future__ import annotations

import calendar
import re
import time

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):?(\d{2}))"
)


def rfc3339(ts: float) -> str:
    """metav1.Time: seconds precision, UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def now_rfc3339() -> str:
    return rfc3339(time.time())


def micro_time(ts: float | None = None) -> str:
    """metav1.MicroTime: always six fractional digits."""
    ts = time.time() if ts is None else ts
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1e6):06d}Z"


def format_ts(ns: int) -> str:
    """RFC3339 with nine fractional digits (the kubelet's fixed RFC3339Nano for logs)."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def parse_ts(text: str) -> int:
    """Nanoseconds since the epoch for an RFC 3339 timestamp (any fraction, any offset)."""
    m = _RFC3339.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    if m.group(9):
        offset = (int(m.group(10)) * 60 + int(m.group(11))) * 60
        secs -= offset if m.group(9) == "+" else -offset
    frac = (m.group(7) or "")[:9].ljust(9, "0")
    return secs * 1_000_000_000 + int(frac)


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch for an RFC 3339 timestamp."""
    return parse_ts(text) / 1e9

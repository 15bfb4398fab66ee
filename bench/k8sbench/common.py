"""Helpers shared by the bench workers: admin access, apiserver metrics, a client-side
request log, percentiles and memory sampling.

Nothing here goes through the ``kubernetes`` Python client except what is being
measured, so the request log (which hooks that client) sees the operator's
requests only; the bench's own calls use :class:`Admin` (plain ``urllib``).
"""

from __future__ import annotations

import json
import math
import re
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional
from urllib.parse import parse_qsl, urlencode, urlsplit

import yaml

# A row of the apiserver's request metrics: (verb, API group, resource, subresource).
Row = tuple[str, str, str, str]


# --------------------------------------------------------------------------- admin access
class Admin:
    """The apiserver with the kubeconfig's (admin) client certificate, over plain urllib."""

    def __init__(self, kubeconfig: str | Path) -> None:
        doc = yaml.safe_load(Path(kubeconfig).read_text())
        ctx_name = doc["current-context"]
        ctx = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in doc["users"] if u["name"] == ctx["user"])
        self.server = cluster["server"].rstrip("/")
        self._ssl = ssl.create_default_context(cafile=cluster["certificate-authority"])
        self._ssl.load_cert_chain(user["client-certificate"], user["client-key"])

    def raw(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: Optional[dict] = None,
        timeout: float = 30.0,
    ) -> bytes:
        url = self.server + path + (("?" + urlencode(query)) if query else "")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, context=self._ssl, timeout=timeout) as resp:
            return resp.read()

    def json(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        raw = self.raw(method, path, body, **kwargs)
        return json.loads(raw) if raw else None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.json("GET", path, **kwargs)

    def exists(self, path: str) -> bool:
        try:
            self.raw("GET", path)
            return True
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise

    def delete(self, path: str) -> None:
        try:
            self.raw("DELETE", path, {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise

    def metrics(self) -> str:
        return self.raw("GET", "/metrics", timeout=30).decode()

    def create_namespace(self, name: str) -> None:
        self.json("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        # pods need the namespace's default ServiceAccount (made by the controller-manager)
        deadline = time.monotonic() + 60
        while not self.exists(f"/api/v1/namespaces/{name}/serviceaccounts/default"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no default ServiceAccount in namespace {name}")
            time.sleep(0.1)

    def delete_namespace(self, name: str, wait: float = 0.0) -> None:
        self.delete(f"/api/v1/namespaces/{name}")
        deadline = time.monotonic() + wait
        while wait and time.monotonic() < deadline and self.exists(f"/api/v1/namespaces/{name}"):
            time.sleep(0.25)


# ------------------------------------------------------------------------------ metrics
_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str) -> Iterable[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of metric ``name`` in Prometheus text format."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        match = _SAMPLE.match(line)
        if match is None or match.group("name") != name:
            continue
        labels = dict(_LABEL.findall(match.group("labels") or ""))
        yield labels, float(match.group("value"))


def _row(labels: dict[str, str]) -> Row:
    return (labels.get("verb", ""), labels.get("group", ""), labels.get("resource", ""), labels.get("subresource", ""))


def request_totals(text: str) -> Counter:
    """``apiserver_request_total`` summed over code/scope/version/component, by row."""
    out: Counter = Counter()
    for labels, value in samples(text, "apiserver_request_total"):
        if labels.get("resource"):
            out[_row(labels)] += value
    return out


def request_durations(text: str) -> dict[str, Counter]:
    """``apiserver_request_duration_seconds`` ``sum`` and ``count`` by row (dry runs left out): the time the
    apiserver spent on each kind of request, from its own clock."""
    out: dict[str, Counter] = {"sum": Counter(), "count": Counter()}
    for part in out:
        for labels, value in samples(text, f"apiserver_request_duration_seconds_{part}"):
            if labels.get("resource") and not labels.get("dry_run"):
                out[part][_row(labels)] += value
    return out


def longrunning(text: str) -> Counter:
    """``apiserver_longrunning_requests`` (open watches, log streams, ...) by row."""
    out: Counter = Counter()
    for labels, value in samples(text, "apiserver_longrunning_requests"):
        out[_row(labels)] += value
    return out


def diff(after: Counter, before: Counter) -> Counter:
    keys = set(after) | set(before)
    return Counter({k: after.get(k, 0) - before.get(k, 0) for k in keys if after.get(k, 0) != before.get(k, 0)})


def row_name(row: Row) -> str:
    verb, group, resource, sub = row
    res = f"{group}/{resource}" if group else resource
    return f"{verb} {res}{'/' + sub if sub else ''}"


# ------------------------------------------------------------------- client-side request log
_CONNECT_SUBRESOURCES = {"log", "exec", "proxy", "attach", "portforward"}


def classify(method: str, url: str, query: Iterable[tuple[str, Any]] = ()) -> Row:
    """The apiserver metric row a request lands in (its RequestInfo: verb, group, resource, subresource)."""
    split = urlsplit(url)
    params = dict(parse_qsl(split.query))
    params.update({k: str(v) for k, v in query})
    parts = [p for p in split.path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return (method.upper(), "", "", "")
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        rest = rest[2:]
    if not rest:
        return (method.upper(), group, "", "")
    resource = rest[0]
    named = len(rest) >= 2
    sub = rest[2] if len(rest) >= 3 else ""
    verb = method.upper()
    if sub in _CONNECT_SUBRESOURCES:  # the apiserver's metrics report these as CONNECT (CleanVerb)
        verb = "CONNECT"
    elif verb == "GET":
        if params.get("watch", "").lower() in ("true", "1"):
            verb = "WATCH"
        elif not named:
            verb = "LIST"
    elif verb == "DELETE" and not named:
        verb = "DELETECOLLECTION"
    return (verb, group, resource, sub)


class RequestLog:
    """Every request sent through the ``kubernetes`` client in this process, with its time.

    Installed by wrapping ``kubernetes.client.rest.RESTClientObject.request``, the one
    place both operators' requests pass (ours via ``ApiClient.call_api``, ZenML's via the
    generated ``BatchV1Api``).
    """

    def __init__(self) -> None:
        self.entries: list[tuple[float, str, str, Row]] = []
        self.connections = 0  # TLS connections opened (each one a handshake with the apiserver)
        self._lock = threading.Lock()

    def install(self) -> "RequestLog":
        from kubernetes.client import rest as kube_rest

        original = kube_rest.RESTClientObject.request
        log = self

        def request(client: Any, method: str, url: str, query_params: Any = None, *args: Any, **kwargs: Any) -> Any:
            row = classify(method, url, query_params or ())
            with log._lock:
                log.entries.append((time.time(), method, urlsplit(url).path, row))
            return original(client, method, url, query_params, *args, **kwargs)

        kube_rest.RESTClientObject.request = request  # type: ignore[method-assign]

        from urllib3 import connectionpool

        new_conn = connectionpool.HTTPSConnectionPool._new_conn

        def counted(pool: Any) -> Any:
            with log._lock:
                log.connections += 1
            return new_conn(pool)

        connectionpool.HTTPSConnectionPool._new_conn = counted  # type: ignore[method-assign]
        return self

    def mark(self) -> int:
        with self._lock:
            return len(self.entries)

    def rows(self, start: int = 0, end: Optional[int] = None) -> Counter:
        with self._lock:
            return Counter(e[3] for e in self.entries[start:end])

    def between(self, t0: float, t1: float) -> list[tuple[float, str, str, Row]]:
        with self._lock:
            return [e for e in self.entries if t0 <= e[0] <= t1]


# ------------------------------------------------------------------------------- statistics
def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": min(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values),
        "mean": sum(values) / len(values),
    }


# ------------------------------------------------------------------------------------ memory
class RssSampler:
    """Samples this process's resident set size every ``interval`` seconds; keeps the peak."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.start_rss = self._proc.memory_info().rss
        self.peak_rss = self.start_rss
        self.peak_threads = threading.active_count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> int:
        rss = self._proc.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_threads = max(self.peak_threads, threading.active_count())
        return rss

    def start(self) -> "RssSampler":
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.sample()


def mib(n: float) -> float:
    return n / (1024 * 1024)


COMPONENTS = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kubelet", "containerd", "runc")


def proc_stats() -> Iterator[tuple[int, str, list[str]]]:
    """Every process's pid, name and the ``/proc/PID/stat`` fields after the name (state first, then ppid)."""
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = entry.read_text()
        except OSError:
            continue
        yield int(entry.parent.name), stat[stat.index("(") + 1: stat.rindex(")")], stat[stat.rindex(")") + 2:].split()


def component_cpu() -> Counter:
    """CPU seconds (user + system) used so far by the local cluster's processes, by component
    (``/proc/PID/stat``; containerd's shims count as containerd), to see who is busy in a window."""
    import os

    ticks = os.sysconf("SC_CLK_TCK")
    out: Counter = Counter()
    for pid, comm, fields in proc_stats():
        if comm == "kube":  # the multi-call binary: its first argument names the component
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            comm = f"kube-{argv[1].decode()}" if len(argv) > 1 else comm
            comm = "kubelet" if comm == "kube-kubelet" else comm
        name = next((c for c in COMPONENTS if comm.startswith(c[:15])), None)
        if name is not None:
            out[name] += (int(fields[11]) + int(fields[12])) / ticks
    return out

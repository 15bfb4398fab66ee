"""A container's environment: env/envFrom, the downward API, $(VAR) expansion and the base env.

Errors that the kubelet reports as CreateContainerConfigError raise ``ConfigError``
with the kubelet's wording (``secret "x" not found``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from decimal import Decimal
from typing import Callable, Protocol

from .quantity import ceil_div, parse_quantity

HOST_IP = "127.0.0.1"
POD_IP = "127.0.0.1"
# Variables of the agent's own environment that must not leak into containers.
_AGENT_ONLY = ("KUBECONFIG", "K8SSO_KUBECONFIG", "NOTIFY_SOCKET", "PYTEST_CURRENT_TEST")


class ConfigError(Exception):
    """The kubelet's CreateContainerConfigError."""


class ObjectSource(Protocol):
    """Reads the secrets and config maps a pod references (None when they do not exist)."""

    def secret(self, namespace: str, name: str) -> dict | None: ...

    def configmap(self, namespace: str, name: str) -> dict | None: ...


_LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_value(pod: dict, path: str) -> str:
    """The value of a downward-API ``fieldRef.fieldPath``."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": HOST_IP,
        "status.hostIPs": HOST_IP,
        "status.podIP": POD_IP,
        "status.podIPs": POD_IP,
    }
    if path in simple:
        return str(simple[path] or "")
    match = _LABEL_REF.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        return format_map(meta.get(path.split(".", 1)[1]) or {})
    raise ConfigError(f"unsupported fieldPath: {path}")


def format_map(values: dict[str, str]) -> str:
    """The downward API's labels/annotations file format: sorted ``key="value"`` lines."""
    return "\n".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(values.items()))


def resource_value(pod: dict, container_name: str, resource: str, divisor: str | None, allocatable: dict) -> str:
    """The value of a ``resourceFieldRef`` (limits default to the node's allocatable, like the kubelet)."""
    containers = pod["spec"].get("containers", []) + pod["spec"].get("initContainers", [])
    container = next((c for c in containers if c["name"] == container_name), None)
    if container is None:
        raise ConfigError(f"container {container_name!r} not found in pod for resourceFieldRef")
    kind, _, name = resource.partition(".")
    res = container.get("resources") or {}
    raw = (res.get(kind) or {}).get(name)
    if raw is None and kind == "requests":
        raw = (res.get("limits") or {}).get(name)
    if raw is None:
        raw = allocatable.get(name, "0") if kind == "limits" else "0"
    value = parse_quantity(raw)
    div = parse_quantity(divisor) if divisor not in (None, "", "0") else Decimal(1)
    return str(ceil_div(value, div))


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Kubernetes $(VAR) expansion: ``$$`` escapes, unknown references stay literally."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    value = lookup(name)
                    out.append(value if value is not None else f"$({name})")
                    i = end + 1
                    continue
                out.append("$(")
                i += 2
                continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def service_env(api_host: str, api_port: int) -> dict[str, str]:
    """The ``kubernetes`` service variables, pointing at the loopback apiserver (no kube-proxy here)."""
    port = str(api_port)
    return {
        "KUBERNETES_SERVICE_HOST": api_host,
        "KUBERNETES_SERVICE_PORT": port,
        "KUBERNETES_SERVICE_PORT_HTTPS": port,
        "KUBERNETES_PORT": f"tcp://{api_host}:{port}",
        f"KUBERNETES_PORT_{port}_TCP": f"tcp://{api_host}:{port}",
        f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
        f"KUBERNETES_PORT_{port}_TCP_PORT": port,
        f"KUBERNETES_PORT_{port}_TCP_ADDR": api_host,
    }


def base_env(pod_name: str) -> dict[str, str]:
    """The 'image' environment: this agent's environment with this Python's bin directory first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in _AGENT_ONLY}
    bindir = os.path.dirname(sys.executable)
    rest = [p for p in env.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep) if p and p != bindir]
    env["PATH"] = os.pathsep.join([bindir, *rest])
    env["HOSTNAME"] = pod_name
    env.setdefault("HOME", "/root")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _decode(secret: dict, key: str) -> str | None:
    data = secret.get("data") or {}
    if key not in data:
        return None
    return base64.b64decode(data[key]).decode("utf-8", "replace")


def _key_ref(ref: dict, kind: str, namespace: str, source: ObjectSource) -> str | None:
    name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
    obj = source.secret(namespace, name) if kind == "Secret" else source.configmap(namespace, name)
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{kind.lower()} "{name}" not found')
    value = _decode(obj, key) if kind == "Secret" else (obj.get("data") or {}).get(key)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {kind} {namespace}/{name}")
    return value


def container_env(
    pod: dict,
    container: dict,
    source: ObjectSource,
    allocatable: dict,
    services: dict[str, str],
) -> dict[str, str]:
    """The variables the kubelet gives a container (without the base env); raises ConfigError."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for item in container.get("envFrom") or []:
        prefix = item.get("prefix", "")
        if "secretRef" in item or "configMapRef" in item:
            kind = "Secret" if "secretRef" in item else "ConfigMap"
            ref = item.get("secretRef") or item.get("configMapRef") or {}
            obj = source.secret(namespace, ref.get("name", "")) if kind == "Secret" else source.configmap(
                namespace, ref.get("name", "")
            )
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind.lower()} "{ref.get("name", "")}" not found')
            keys = (obj.get("data") or {}).keys()
            for key in keys:
                if "=" in key:
                    continue
                value = _decode(obj, key) if kind == "Secret" else obj["data"][key]
                env[prefix + key] = value or ""

    def lookup(name: str) -> str | None:
        return env.get(name, services.get(name))

    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), lookup)
            continue
        src = var["valueFrom"]
        value: str | None
        if "fieldRef" in src:
            value = field_value(pod, src["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in src:
            ref = src["resourceFieldRef"]
            value = resource_value(
                pod, ref.get("containerName") or container["name"], ref["resource"], ref.get("divisor"), allocatable
            )
        elif "secretKeyRef" in src:
            value = _key_ref(src["secretKeyRef"], "Secret", namespace, source)
        elif "configMapKeyRef" in src:
            value = _key_ref(src["configMapKeyRef"], "ConfigMap", namespace, source)
        elif "fileKeyRef" in src:
            raise ConfigError(f"env {name}: fileKeyRef is not supported on a process node")
        else:
            value = None
        if value is not None:
            env[name] = value
    return {**services, **env}

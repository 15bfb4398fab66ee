"""The Node object: registration, status heartbeats and the kube-node-lease Lease.

Registration mirrors the kubelet: the node registers itself with its labels and taints
plus ``node.kubernetes.io/not-ready:NoSchedule`` (the node-lifecycle controller removes
it once it sees Ready=True), then keeps a Lease renewed and re-posts its status
(conditions with fresh heartbeats) periodically.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from pathlib import Path
from typing import Any

from .apiclient import MERGE, ApiClient, ApiError, retry
from .timeutil import micro_time, now_rfc3339
from .config import NodeConfig

log = logging.getLogger(__name__)
NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
LEASE_NS = "kube-node-lease"
# Labels under kubernetes.io / k8s.io that a node may still set on itself (NodeRestriction admission).
_ALLOWED = {
    "kubernetes.io/hostname", "kubernetes.io/arch", "kubernetes.io/os", "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os", "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region", "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region", "topology.kubernetes.io/zone",
}


def _under(namespace: str, root: str) -> bool:
    return namespace == root or namespace.endswith("." + root)


def self_settable(label: str) -> bool:
    """Whether NodeRestriction lets a node set ``label`` on its own Node object."""
    ns = label.split("/", 1)[0] if "/" in label else ""
    if _under(ns, "node-restriction.kubernetes.io"):
        return False
    if _under(ns, "kubernetes.io") or _under(ns, "k8s.io"):
        return label in _ALLOWED or _under(ns, "kubelet.kubernetes.io") or _under(ns, "node.kubernetes.io")
    return True


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


class NodeStatus:
    """Registers the Node and keeps it (and its Lease) fresh from a background thread."""

    def __init__(self, api: ApiClient, config: NodeConfig, admin: ApiClient | None = None) -> None:
        self.api = api
        self.admin = admin
        self.config = config
        self.name = config.name
        self.uid = ""
        self.kubelet_version = "v0.0.0"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._transition: dict[str, str] = {}

    # --------------------------------------------------------------- content
    @property
    def labels(self) -> dict[str, str]:
        return {
            **self.config.labels,
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": _arch(),
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": _arch(),
        }

    @property
    def allocatable(self) -> dict[str, str]:
        cap = {k: str(v) for k, v in self.config.capacity.items()}
        cap.setdefault("pods", "110")
        return cap

    def status(self) -> dict[str, Any]:
        now = now_rfc3339()

        def cond(type_: str, status: str, reason: str, message: str) -> dict[str, str]:
            return {"type": type_, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": now, "lastTransitionTime": self._transition.get(type_, now)}

        conditions = [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "process node agent is posting ready status"),
        ]
        for c in conditions:
            self._transition.setdefault(c["type"], c["lastTransitionTime"])
        return {
            "capacity": self.allocatable,
            "allocatable": self.allocatable,
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.config.port}},
            "nodeInfo": {
                "machineID": _read("/etc/machine-id", "0" * 32),
                "systemUUID": _read("/sys/class/dmi/id/product_uuid", "") or _read("/etc/machine-id", "0" * 32),
                "bootID": _read("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": platform.release(),
                "osImage": _os_image(),
                "containerRuntimeVersion": "process://0.1.0",
                "kubeletVersion": self.kubelet_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": _arch(),
            },
        }

    # ---------------------------------------------------------- registration
    def register(self) -> None:
        """Create (or adopt) the Node object and post its status; retried until it works."""
        try:
            self.kubelet_version = retry(lambda: self.api.get("/version"), what="GET /version")["gitVersion"]
        except Exception as exc:  # noqa: BLE001 - cosmetic
            log.warning("cannot read the apiserver version: %s", exc)
        own = {k: v for k, v in self.labels.items() if self_settable(k)}
        foreign = {k: v for k, v in self.labels.items() if not self_settable(k)}
        taints = [dict(t) for t in self.config.taints]
        if not any(t["key"] == NOT_READY_TAINT["key"] for t in taints):
            taints.append(dict(NOT_READY_TAINT, timeAdded=now_rfc3339()))
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.name, "labels": own},
                "spec": {"taints": taints}, "status": self.status()}
        delay = 0.2
        while not self._stop.is_set():
            try:
                node = self.api.post("/api/v1/nodes", body)
                break
            except ApiError as exc:
                if exc.status == 409:
                    node = self.api.patch(f"/api/v1/nodes/{self.name}", {"metadata": {"labels": own}})
                    break
                log.warning("registering node %s: %s", self.name, exc)
            except Exception as exc:  # noqa: BLE001 - apiserver not reachable yet
                log.warning("registering node %s: %s", self.name, exc)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        else:
            return
        self.uid = node["metadata"]["uid"]
        if foreign:
            self._label_as_admin(foreign)
        self.post_status()
        self.renew_lease()
        log.info("node %s registered (uid %s)", self.name, self.uid)

    def _label_as_admin(self, labels: dict[str, str]) -> None:
        """NodeRestriction forbids a node to set these labels on itself; an admin sets them (as kubeadm does)."""
        if self.admin is None:
            log.warning("labels %s need admin credentials (NodeRestriction); not set", sorted(labels))
            return
        retry(lambda: self.admin.patch(f"/api/v1/nodes/{self.name}", {"metadata": {"labels": labels}}),
              what="label node")

    def post_status(self) -> None:
        retry(lambda: self.api.patch(f"/api/v1/nodes/{self.name}/status", {"status": self.status()}),
              what="node status")

    def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases/{self.name}"
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": self.config.lease_seconds,
                "renewTime": micro_time()}
        try:
            self.api.patch(path, {"spec": spec}, content_type=MERGE)
        except ApiError as exc:
            if exc.status != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": LEASE_NS,
                                 "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.name,
                                                      "uid": self.uid}]},
                    "spec": spec}
            self.api.post(f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases", body)

    # ------------------------------------------------------------ heartbeat
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="node-heartbeat", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        next_status = time.monotonic() + self.config.status_interval
        while not self._stop.wait(self.config.lease_renew_interval):
            try:
                self.renew_lease()
                if time.monotonic() >= next_status:
                    self.post_status()
                    next_status = time.monotonic() + self.config.status_interval
            except ApiError as exc:
                if exc.status == 404 and "nodes" in str(exc):
                    log.warning("node %s vanished; registering again", self.name)
                    self.register()
                else:
                    log.warning("heartbeat of node %s: %s", self.name, exc)
            except Exception as exc:  # noqa: BLE001 - keep beating
                log.warning("heartbeat of node %s: %s", self.name, exc)

    def stop(self) -> None:
        self._stop.set()


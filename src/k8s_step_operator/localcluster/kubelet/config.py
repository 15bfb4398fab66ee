"""The node agent's configuration file (written by ``controlplane.LocalCluster``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

DEFAULT_IMAGES = [
    "python:*",
    "busybox*",
    "local/*",
    "zenml*",
    "*/zenml*",
    "docker.io/library/python:*",
    "docker.io/library/busybox*",
]


@dataclass
class NodeConfig:
    """Everything the agent needs; unknown keys are ignored."""

    name: str
    kubeconfig: Path
    state_dir: Path
    port: int
    serving_cert: Path
    serving_key: Path
    ca_cert: Path
    api_server: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)
    capacity: dict[str, str] = field(default_factory=lambda: {"cpu": "8", "memory": "32Gi", "pods": "110"})
    admin_kubeconfig: Path | None = None
    images: list[str] = field(default_factory=lambda: list(DEFAULT_IMAGES))
    # Container restart and image pull back-off (the kubelet's: 10 s doubling to 300 s).
    backoff_initial: float = 10.0
    backoff_max: float = 300.0
    lease_seconds: int = 40
    lease_renew_interval: float = 10.0
    status_interval: float = 60.0

    @classmethod
    def load(cls, path: Path | str) -> "NodeConfig":
        raw: dict[str, Any] = json.loads(Path(path).read_text())
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "NodeConfig":
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in raw.items() if k in known and v is not None}
        for key in ("kubeconfig", "state_dir", "serving_cert", "serving_key", "ca_cert", "admin_kubeconfig"):
            if key in values:
                values[key] = Path(values[key])
        values["port"] = int(values["port"])
        return cls(**values)

    @property
    def api_host(self) -> str:
        return urlparse(self.api_server).hostname or "127.0.0.1"

    @property
    def api_port(self) -> int:
        return urlparse(self.api_server).port or 443

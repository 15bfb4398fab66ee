"""Start and stop a real Kubernetes control plane plus process nodes on loopback.

``LocalCluster`` owns every process it starts: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, one node agent per ``NodeSpec`` and the
storage controller. Children die with the process that started them, and
``stop()`` removes the state directory.
"""

from __future__ import annotations

import json
import os
import base64
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from . import processes
from .build import Binaries, ensure_binaries
from .pki import CertificateAuthority, CertPair, service_account_keys

CONTEXT_NAME = "k8s-step-operator-local"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"


@dataclass
class NodeSpec:
    """A process node: what it advertises to the scheduler."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)
    capacity: dict[str, str] = field(
        default_factory=lambda: {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    )


def default_nodes() -> list[NodeSpec]:
    """One plain node and one GPU node labelled and tainted like ZenML's settings example."""
    gpu = NodeSpec(
        name="local-gpu",
        labels={
            "cloud.google.com/gke-nodepool": "ml-pool",
            "gpu-type": "nvidia-tesla-v100",
            "node-role.k8s-step-operator.io/gpu": "true",
        },
        taints=[{"key": "gpu", "value": "present", "effect": "NoSchedule"}],
    )
    gpu.capacity["nvidia.com/gpu"] = "2"
    return [NodeSpec(name="local-cpu"), gpu]


def write_kubeconfig(path: Path, server: str, ca: Path, client: CertPair, user: str) -> Path:
    """Write a kubeconfig with one cluster, user and (current) context."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT_NAME, "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(client.cert), "client-key": str(client.key)}}],
        "contexts": [{"name": CONTEXT_NAME, "context": {"cluster": CONTEXT_NAME, "user": user}}],
        "current-context": CONTEXT_NAME,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


class LocalCluster:
    """A control plane and process nodes; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        root: Path | None = None,
        nodes: list[NodeSpec] | None = None,
        binaries: Binaries | None = None,
        keep_root: bool = False,
    ) -> None:
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="k8sso-cluster-"))
        self.keep_root = keep_root
        self.nodes = nodes if nodes is not None else default_nodes()
        self._binaries = binaries
        self.procs: dict[str, subprocess.Popen] = {}
        self.kubeconfig = self.root / "kubeconfig"
        self.ports: dict[str, int] = {}

    # ------------------------------------------------------------------ paths
    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    # -------------------------------------------------------------- lifecycle
    def __enter__(self) -> "LocalCluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> "LocalCluster":
        """Start every component and wait until the nodes are Ready."""
        bins = self._binaries or ensure_binaries()
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        for name in ("etcd_client", "etcd_peer", "apiserver", "controller_manager", "scheduler"):
            self.ports[name] = processes.free_port()
        ca = CertificateAuthority(self.pki)
        sa = service_account_keys(self.pki)
        serving = ca.issue(
            "apiserver",
            "kube-apiserver",
            server_names=(
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "localhost",
                "127.0.0.1",
                SERVICE_IP,
            ),
        )
        admin = ca.issue("admin", "k8s-step-operator-admin", "system:masters")
        kubelet_client = ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters")
        kcm = ca.issue("controller-manager", "system:kube-controller-manager")
        sched = ca.issue("scheduler", "system:kube-scheduler")
        self._write_state()

        self._start_etcd(bins)
        self._start_apiserver(bins, ca.pair, sa, serving, kubelet_client)
        write_kubeconfig(self.kubeconfig, self.server, ca.pair.cert, admin, "admin")
        processes.wait_until(self._ready, timeout, what="kube-apiserver /readyz")

        kcm_config = write_kubeconfig(self.root / "controller-manager.kubeconfig", self.server, ca.pair.cert, kcm, "kcm")
        sched_config = write_kubeconfig(self.root / "scheduler.kubeconfig", self.server, ca.pair.cert, sched, "sched")
        self._spawn(
            "controller-manager",
            [
                *bins.command("controller-manager"),
                f"--kubeconfig={kcm_config}",
                f"--authentication-kubeconfig={kcm_config}",
                f"--authorization-kubeconfig={kcm_config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['controller_manager']}",
                f"--root-ca-file={ca.pair.cert}",
                f"--service-account-private-key-file={sa.key}",
                f"--cluster-signing-cert-file={ca.pair.cert}",
                f"--cluster-signing-key-file={ca.pair.key}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--controllers=*,-nodeipam,-service-lb-controller,-cloud-node-lifecycle-controller,-route",
                "--node-monitor-grace-period=20s",
                "--pvclaimbinder-sync-period=2s",
                "--concurrent-gc-syncs=5",
            ],
        )
        self._spawn(
            "scheduler",
            [
                *bins.command("scheduler"),
                f"--kubeconfig={sched_config}",
                f"--authentication-kubeconfig={sched_config}",
                f"--authorization-kubeconfig={sched_config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['scheduler']}",
                "--leader-elect=false",
            ],
        )
        self._start_nodes(ca)
        self._start_storage()
        processes.wait_until(self._nodes_ready, timeout, interval=0.25, what="nodes Ready and untainted")
        processes.wait_until(self._default_sa_exists, timeout, interval=0.25, what="default ServiceAccount")
        processes.wait_until(self._storage_ready, timeout, interval=0.1, what="storage ready (volumes/ready)")
        return self

    def stop(self) -> None:
        """Stop nodes first (so pods die), then the control plane; remove the state dir."""
        order = [n for n in self.procs if n.startswith("node-")] + [
            "storage",
            "scheduler",
            "controller-manager",
            "apiserver",
            "etcd",
        ]
        for name in order:
            proc = self.procs.pop(name, None)
            if proc is not None:
                processes.stop(proc)
        for proc in self.procs.values():
            processes.stop(proc)
        self.procs.clear()
        if self._own_root and not self.keep_root:
            shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------- components
    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        proc = processes.spawn(argv, self.logs / f"{name}.log", env=env)
        self.procs[name] = proc
        time.sleep(0.05)
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited at once ({proc.returncode}); see {self.logs / (name + '.log')}")

    def _start_etcd(self, bins: Binaries) -> None:
        client, peer = self.ports["etcd_client"], self.ports["etcd_peer"]
        self._spawn(
            "etcd",
            [
                *bins.command("etcd"),
                "--name=local",
                f"--data-dir={self.root / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=local=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )

    def _start_apiserver(
        self, bins: Binaries, ca: CertPair, sa: CertPair, serving: CertPair, kubelet_client: CertPair
    ) -> None:
        self._spawn(
            "apiserver",
            [
                *bins.command("apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd_client']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.ports['apiserver']}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--endpoint-reconciler-type=none",
                f"--kubelet-client-certificate={kubelet_client.cert}",
                f"--kubelet-client-key={kubelet_client.key}",
                "--kubelet-preferred-address-types=InternalIP",
                "--allow-privileged=true",
                "--profiling=false",
                "--enable-priority-and-fairness=false",
            ],
        )

    def _node_kubeconfig(self, ca: CertificateAuthority, node: str) -> Path:
        client = ca.issue(f"node-{node}", f"system:node:{node}", "system:nodes")
        return write_kubeconfig(self.root / f"node-{node}.kubeconfig", self.server, ca.pair.cert, client, node)

    def _start_nodes(self, ca: CertificateAuthority) -> None:
        for spec in self.nodes:
            port = processes.free_port()
            serving = ca.issue(f"kubelet-{spec.name}", spec.name, server_names=("127.0.0.1", "localhost", spec.name))
            config = {
                **asdict(spec),
                "kubeconfig": str(self._node_kubeconfig(ca, spec.name)),
                "admin_kubeconfig": str(self.kubeconfig),
                "state_dir": str(self.root / "nodes" / spec.name),
                "port": port,
                "serving_cert": str(serving.cert),
                "serving_key": str(serving.key),
                "ca_cert": str(ca.pair.cert),
                "api_server": self.server,
            }
            path = self.root / f"node-{spec.name}.json"
            path.write_text(json.dumps(config, indent=2))
            self._spawn(
                f"node-{spec.name}",
                [sys.executable, "-m", "k8s_step_operator.localcluster.node", "--config", str(path)],
                env=self._python_env(),
            )

    def _start_storage(self) -> None:
        self._spawn(
            "storage",
            [
                sys.executable,
                "-m",
                "k8s_step_operator.localcluster.storage",
                "--kubeconfig",
                str(self.kubeconfig),
                "--state-dir",
                str(self.storage_dir),
            ],
            env=self._python_env(),
        )

    @staticmethod
    def _python_env() -> dict[str, str]:
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # ---------------------------------------------------------------- probing
    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def get(self, path: str, timeout: float = 5.0) -> bytes:
        """GET a raw apiserver path with the admin credential (e.g. /metrics)."""
        with urllib.request.urlopen(self.server + path, context=self._ssl_context(), timeout=timeout) as resp:
            return resp.read()

    def _ready(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} died ({proc.returncode}); see {self.logs / (name + '.log')}")
        return self.get("/readyz") == b"ok"

    def _json(self, path: str) -> dict:
        return json.loads(self.get(path))

    def _nodes_ready(self) -> bool:
        self._ready()
        nodes = {n["metadata"]["name"]: n for n in self._json("/api/v1/nodes").get("items", [])}
        for spec in self.nodes:
            node = nodes.get(spec.name)
            if node is None:
                return False
            ready = [c for c in node.get("status", {}).get("conditions", []) if c["type"] == "Ready"]
            if not ready or ready[0]["status"] != "True":
                return False
            if any(t["key"].startswith("node.kubernetes.io/") for t in node["spec"].get("taints", [])):
                return False
        return True

    @property
    def storage_dir(self) -> Path:
        return self.root / "volumes"

    def _storage_ready(self) -> bool:
        self._ready()  # raises if storage (or any component) died
        return (self.storage_dir / "ready").exists()

    def _default_sa_exists(self) -> bool:
        self._json("/api/v1/namespaces/default/serviceaccounts/default")
        return True

    def _write_state(self) -> None:
        (self.root / "cluster.json").write_text(json.dumps({"ports": self.ports, "pid": os.getpid()}, indent=2))

    def status(self) -> dict[str, str]:
        """Each component's state: running or exited(code)."""
        return {
            name: "running" if proc.poll() is None else f"exited({proc.returncode})"
            for name, proc in self.procs.items()
        }

    # ------------------------------------------------- fault injection (drills)
    # Additive helpers for the fault drills (tests/drills): crash one component,
    # bring it back with the very same command line, compact etcd.

    def kill(self, component: str, timeout: float = 30.0) -> None:
        """SIGKILL one component's process group, as a crash would (``start_component`` brings it back)."""
        proc = self.procs[component]
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=timeout)

    def start_component(self, component: str, timeout: float = 120.0) -> None:
        """Start a killed component again with its original command line; wait until the cluster is healthy."""
        proc = self.procs[component]
        if proc.poll() is None:
            raise RuntimeError(f"{component} is still running")
        python = component == "storage" or component.startswith("node-")
        self._spawn(component, [str(a) for a in proc.args], env=self._python_env() if python else None)
        self.wait_healthy(timeout)

    def restart(self, component: str, timeout: float = 120.0) -> None:
        """``kill`` then ``start_component``: returns once /readyz is ok and every node is Ready."""
        self.kill(component)
        self.start_component(component, timeout)

    def wait_healthy(self, timeout: float = 120.0) -> None:
        """Every component running, /readyz ok, every node Ready and untainted (raises TimeoutError)."""
        processes.wait_until(self._ready, timeout, interval=0.2, what="kube-apiserver /readyz")
        processes.wait_until(self._nodes_ready, timeout, interval=0.25, what="nodes Ready and untainted")

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['etcd_client']}"

    def _etcd(self, path: str, body: dict, timeout: float = 10.0) -> dict:
        """POST to etcd's JSON gateway (``/v3/...``)."""
        request = urllib.request.Request(
            self.etcd_url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")

    def etcd_revision(self) -> int:
        """etcd's current revision (the header of a one-key range read)."""
        key = base64.b64encode(b"/registry/").decode()
        data = self._etcd("/v3/kv/range", {"key": key, "limit": 1, "keys_only": True})
        return int(data["header"]["revision"])

    def compact_etcd(self, revision: int | None = None) -> int:
        """Compact etcd's history up to ``revision`` (default: the current one); returns the revision.

        Watches resumed from an older resourceVersion then fail with 410 Gone.
        """
        revision = self.etcd_revision() if revision is None else revision
        self._etcd("/v3/kv/compaction", {"revision": revision, "physical": True}, timeout=30.0)
        return revision

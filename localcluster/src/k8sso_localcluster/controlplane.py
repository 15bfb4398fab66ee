"""Start and stop a real Kubernetes cluster on this machine: control plane plus real nodes.

``LocalCluster`` owns every process it starts: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, a registry, CoreDNS, per node a containerd, a kubelet and our CSI driver's node
plugin, and the storage controllers (our CSI driver's controller plugin under the upstream CSI
sidecars and snapshot controller, ``csi.py``). It claims a network slot (``network.py``), so
several clusters can run at once. Children die with the process that started them; a reaper
process removes what they leave on the host (cgroups, mounts, links, addresses, the NAT chain) if
that process is killed, and ``stop()`` does the same on a normal stop and removes the state
directory.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from . import addons, csi, network, processes, registry
from . import nodes as node_runtime
from .build import Binaries, ensure_binaries
from .build_csi import CsiBinaries, ensure_csi
from .nodes import NodeSpec, default_nodes
from .pki import CertificateAuthority, CertPair, service_account_keys

__all__ = ["LocalCluster", "NodeSpec", "default_nodes", "write_kubeconfig"]

CONTEXT_NAME = "k8s-step-operator-local"


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
    """A control plane and real nodes; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        root: Path | None = None,
        nodes: list[NodeSpec] | None = None,
        binaries: Binaries | None = None,
        keep_root: bool = False,
        csi_binaries: CsiBinaries | None = None,
    ) -> None:
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="k8sso-cluster-"))
        self.keep_root = keep_root
        self.nodes = nodes if nodes is not None else default_nodes()
        self._binaries = binaries
        self._csi_binaries = csi_binaries
        self.procs: dict[str, subprocess.Popen] = {}
        self.kubeconfig = self.root / "kubeconfig"
        self.ports: dict[str, int] = {}
        self._slot: network.SlotLock | None = None
        self.net: network.ClusterNet | None = None
        self._reaper: subprocess.Popen | None = None

    # ------------------------------------------------------------------ paths
    @property
    def server(self) -> str:
        assert self.net is not None, "the cluster is not started"
        return f"https://{self.net.api_ip}:{self.ports['apiserver']}"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def node_paths(self, spec: NodeSpec) -> node_runtime.NodePaths:
        assert self.net is not None, "the cluster is not started"
        return node_runtime.node_paths(self.net, spec)

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
        csi_bins = self._csi_binaries or ensure_csi()
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self._slot = network.SlotLock.acquire(str(self.root))
        self.net = net = network.ClusterNet(self._slot.slot)
        node_runtime.sweep(net, self.nodes)  # whatever a killed owner of this slot left (before the reaper starts)
        self._start_reaper()
        for name in ("etcd_client", "etcd_peer", "apiserver", "controller_manager", "scheduler", "registry"):
            self.ports[name] = processes.free_port()
        network.setup(net, len(self.nodes), self.ports["apiserver"])
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
                net.api_ip,
                net.kubernetes_service_ip,
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
        self._start_registry()
        processes.wait_until(self._ready, timeout, what="kube-apiserver /readyz")
        addons.install(self.apply)
        self._install_storage()

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
        self._start_coredns(bins, ca)
        self._start_nodes(bins, ca)
        self._start_storage(csi_bins, ca)
        processes.wait_until(self._nodes_registered, timeout, interval=0.25, what="nodes registered")
        for spec in self.nodes:
            if spec.extended_resources:
                self.advertise(spec.name, spec.extended_resources)
        processes.wait_until(self._nodes_ready, timeout, interval=0.25, what="nodes Ready and untainted")
        processes.wait_until(self._default_sa_exists, timeout, interval=0.25, what="default ServiceAccount")
        processes.wait_until(self._storage_ready, timeout, interval=0.2,
                             what=f"CSI driver {csi.DRIVER} registered with every kubelet")
        return self

    def stop(self) -> None:
        """Stop kubelets and containerds, then the control plane; sweep the host; remove the state dir."""
        order = [n for n in self.procs if n.startswith("kubelet-")] + [n for n in self.procs if n.startswith("containerd-")]
        order += [n for n in self.procs if n.startswith("csi-") or n == "snapshot-controller"]
        order += ["coredns", "scheduler", "controller-manager", "registry", "apiserver", "etcd"]
        for name in order:
            proc = self.procs.pop(name, None)
            if proc is not None:
                processes.stop(proc)
        for proc in self.procs.values():
            processes.stop(proc)
        self.procs.clear()
        if self.net is not None:
            node_runtime.sweep(self.net, self.nodes)
            network.teardown(self.net)
        if self._reaper is not None:
            processes.stop(self._reaper)
            self._reaper = None
        if self._slot is not None:
            self._slot.release()
            self._slot = None
        if self._own_root and not self.keep_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """What this cluster still holds on the host (empty after a clean stop)."""
        if self.net is None:
            return []
        return node_runtime.leftovers(self.net, self.nodes) + network.leftovers(self.net)

    # ------------------------------------------------------------- components
    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        proc = processes.spawn(argv, self.logs / f"{name}.log", env=env)
        self.procs[name] = proc
        time.sleep(0.05)
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited at once ({proc.returncode}); see {self.logs / (name + '.log')}")

    def _start_reaper(self) -> None:
        """A process in its own session that cleans the host if this one dies without stop()."""
        assert self.net is not None
        spec = json.dumps({"pid": os.getpid(), "slot": self.net.slot, "root": str(self.root),
                           "nodes": [s.name for s in self.nodes]})
        log = open(self.logs / "reaper.log", "ab")
        try:
            self._reaper = subprocess.Popen(
                [sys.executable, "-m", "k8sso_localcluster.reaper", spec],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self._python_env(), start_new_session=True,
            )
        finally:
            log.close()

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
        assert self.net is not None
        self._spawn(
            "apiserver",
            [
                *bins.command("apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd_client']}",
                f"--bind-address={self.net.api_ip}",
                f"--advertise-address={self.net.api_ip}",
                f"--secure-port={self.ports['apiserver']}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                f"--service-cluster-ip-range={self.net.service_cidr}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--endpoint-reconciler-type=lease",
                f"--kubelet-client-certificate={kubelet_client.cert}",
                f"--kubelet-client-key={kubelet_client.key}",
                f"--kubelet-certificate-authority={ca.cert}",
                "--kubelet-preferred-address-types=InternalIP",
                "--allow-privileged=true",
                "--profiling=false",
                "--enable-priority-and-fairness=false",
            ],
        )

    def _start_registry(self) -> None:
        config = registry.write_config(self.root / "registry.json", self.ports["registry"], registry.registry_storage(),
                                       read_only=True)
        self._spawn("registry", [registry.registry_binary(), "serve", str(config)])
        registry.wait_ready(self.ports["registry"])

    def _start_coredns(self, bins: Binaries, ca: CertificateAuthority) -> None:
        assert self.net is not None and bins.coredns is not None
        client = ca.issue("coredns", addons.COREDNS_USER)
        kubeconfig = write_kubeconfig(self.root / "coredns.kubeconfig", self.server, ca.pair.cert, client, "coredns")
        corefile = self.root / "Corefile"
        corefile.write_text(addons.corefile(self.net.dns_ip, kubeconfig, processes.free_port()))
        self._spawn("coredns", [str(bins.coredns), "-conf", str(corefile)])

    def _start_nodes(self, bins: Binaries, ca: CertificateAuthority) -> None:
        assert self.net is not None
        for index, spec in enumerate(self.nodes):
            node = self.net.node(index)
            paths = self.node_paths(spec)
            node_runtime.prepare(self.net, node, spec, paths, self.ports["registry"])
            serving = ca.issue(f"kubelet-{spec.name}", spec.name, "system:nodes", server_names=(node.ip, spec.name))
            client = ca.issue(f"node-{spec.name}", f"system:node:{spec.name}", "system:nodes")
            kubeconfig = write_kubeconfig(paths.root / "kubeconfig", self.server, ca.pair.cert, client, spec.name)
            port = processes.free_port()
            node_runtime.write_yaml(paths.kubelet_config, node_runtime.kubelet_config(
                self.net, node, spec, paths, port, ca.pair.cert, serving.cert, serving.key))
            self._spawn(f"containerd-{spec.name}", ["containerd", "--config", str(paths.containerd_config)])
            self._wait_for_containerd(spec)
            self._spawn(f"kubelet-{spec.name}",
                        [*bins.command("kubelet"), *node_runtime.kubelet_args(spec, node, paths, kubeconfig)])

    def _wait_for_containerd(self, spec: NodeSpec) -> None:
        socket = self.node_paths(spec).containerd_socket
        processes.wait_until(socket.exists, 30, interval=0.05, what=f"containerd of {spec.name}")

    def _install_storage(self, timeout: float = 60.0) -> None:
        """The snapshot CRDs, the controllers' upstream RBAC, the CSIDriver, StorageClasses, VolumeSnapshotClass."""
        crds = csi.crd_objects()
        for obj in crds + csi.rbac_objects():
            self.apply(obj)
        for crd in crds:
            path = csi.resource_path(crd)
            processes.wait_until(lambda p=path: csi.crd_established(self.request("GET", p)), timeout,
                                 interval=0.1, what=f"CRD {crd['metadata']['name']} Established")
        for obj in csi.storage_objects():  # right after Established a new resource may 404 for a moment
            processes.wait_until(lambda o=obj: self.apply(o), timeout, interval=0.1, what=f"apply {obj['kind']}")

    @property
    def csi_socket(self) -> Path:
        """The controller plugin's socket, shared by the CSI sidecars."""
        return self.root / "csi" / "controller.sock"

    def csi_node_socket(self, spec: NodeSpec) -> Path:
        return self.node_paths(spec).run / "csi.sock"

    def _start_storage(self, bins: CsiBinaries, ca: CertificateAuthority) -> None:
        """Our driver (controller plugin, one node plugin per kubelet), then the upstream controllers."""
        self.csi_socket.parent.mkdir(parents=True, exist_ok=True)
        self._spawn("csi-controller", csi.driver_argv(bins.driver, self.csi_socket, self.storage_dir))
        for spec in self.nodes:
            registration = self.node_paths(spec).kubelet_root / "plugins_registry"
            self._spawn(f"csi-node-{spec.name}", csi.driver_argv(
                bins.driver, self.csi_node_socket(spec), self.storage_dir, node_id=spec.name,
                registration_dir=registration))
        processes.wait_until(self.csi_socket.exists, 30, interval=0.05, what="CSI controller socket")
        for sidecar in csi.SIDECARS:
            cert = ca.issue(sidecar.name, sidecar.user, "system:serviceaccounts")
            kubeconfig = write_kubeconfig(self.root / f"{sidecar.name}.kubeconfig", self.server, ca.pair.cert, cert,
                                          sidecar.name)
            self._spawn(sidecar.name, csi.sidecar_argv(bins, sidecar, self.csi_socket, kubeconfig))

    @staticmethod
    def _python_env() -> dict[str, str]:
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[1])  # localcluster/src: its helper processes import it
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def advertise(self, node: str, resources: dict[str, str]) -> None:
        """Advertise extended resources (``nvidia.com/gpu``) in a node's status, as cluster admins do."""
        patch = [{"op": "add", "path": f"/status/capacity/{k.replace('/', '~1')}", "value": v} for k, v in resources.items()]
        self.request("PATCH", f"/api/v1/nodes/{node}/status", patch, "application/json-patch+json")

    # ---------------------------------------------------------------- probing
    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def get(self, path: str, timeout: float = 5.0) -> bytes:
        """GET a raw apiserver path with the admin credential (e.g. /metrics)."""
        with urllib.request.urlopen(self.server + path, context=self._ssl_context(), timeout=timeout) as resp:
            return resp.read()

    def request(self, method: str, path: str, body: object = None, content_type: str = "application/json") -> dict:
        """A JSON request with the admin credential."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Content-Type": content_type, "Accept": "application/json"})
        with urllib.request.urlopen(req, context=self._ssl_context(), timeout=30) as resp:
            return json.loads(resp.read() or b"{}")

    def apply(self, obj: dict, field_manager: str = "k8s-step-operator-local") -> dict:
        """Server-side apply of one object (admin)."""
        kind_path = addons.resource_path(obj) if obj["kind"] in addons.KINDS else csi.resource_path(obj)
        return self.request("PATCH", f"{kind_path}?fieldManager={field_manager}&force=true", obj,
                            "application/apply-patch+yaml")

    def _nodes_registered(self) -> bool:
        self._ready()
        names = {n["metadata"]["name"] for n in self._json("/api/v1/nodes").get("items", [])}
        return all(spec.name in names for spec in self.nodes)

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
        self._ready()  # raises if a storage process (or any component) died
        csinodes = {n["metadata"]["name"]: n for n in self._json("/apis/storage.k8s.io/v1/csinodes").get("items", [])}
        return all(csi.driver_registered(csinodes.get(spec.name, {})) for spec in self.nodes)

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

    def start_component(self, component: str, timeout: float = 120.0, wait: bool = True) -> None:
        """Start a killed component again with its original command line; wait until the cluster is
        healthy (unless ``wait`` is false: other components may still be down)."""
        proc = self.procs[component]
        if proc.poll() is None:
            raise RuntimeError(f"{component} is still running")
        self._spawn(component, [str(a) for a in proc.args])
        if component.startswith("containerd-"):
            self._wait_for_containerd(NodeSpec(component.split("-", 1)[1]))
        if component.startswith("kubelet-"):  # a node that registers again has lost its extended resources
            spec = next(s for s in self.nodes if s.name == component.split("-", 1)[1])
            if spec.extended_resources:
                processes.wait_until(self._nodes_registered, timeout, interval=0.25, what="nodes registered")
                self.advertise(spec.name, spec.extended_resources)
        if wait:
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

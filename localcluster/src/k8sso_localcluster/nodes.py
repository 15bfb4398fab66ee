"""Real nodes: the upstream kubelet on its own containerd (Debian's containerd, runc and CNI plugins).

Each node has its own containerd (config, root, state, sockets, CNI config and IPAM data), because a
containerd shared by two kubelets would see each kubelet remove the other's containers as unknown.
Each kubelet has its own root dir, node address, certificates and cgroup root, so the node's pods
live in ``/sys/fs/cgroup/<controller>/<cgroup root>/...`` and nowhere else.

Everything a node creates on the host lies under its state directory, a cgroup root named after the
slot, or the slot's network (``network.py``); :func:`sweep` removes all of it, also after a crash.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import yaml

from .network import ClusterNet, NodeNet, cni_config

CGROUP_BASE = "/sys/fs/cgroup"
CGROUP_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd")
CNI_BIN_DIR = "/usr/lib/cni"
PAUSE_IMAGE = "registry.k8sso.local/k8sso/pause:latest"


@dataclass
class NodeSpec:
    """A node: its name, labels, taints and extended resources (patched into its status)."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)
    extended_resources: dict[str, str] = field(default_factory=dict)
    max_pods: int = 110


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
        extended_resources={"nvidia.com/gpu": "2"},
    )
    return [NodeSpec(name="local-cpu"), gpu]


def cgroup_root(net: ClusterNet, spec: NodeSpec) -> str:
    return f"/k8sso-s{net.slot}-{spec.name}"


# A node's state and sockets live at short paths named after the slot: the kubelet and containerd
# put unix sockets in them, and a socket path must stay under 108 bytes whatever the cluster's root.
STATE_DIR = Path("/var/lib/k8s-step-operator")
RUN_DIR = Path("/run/k8s-step-operator")
SHIM_SOCKETS = Path("/run/containerd/s")  # where containerd 1.6 puts its shims' sockets, whatever its config


def node_paths(net: ClusterNet, spec: NodeSpec) -> "NodePaths":
    return NodePaths(STATE_DIR / f"s{net.slot}-{spec.name}", RUN_DIR / f"s{net.slot}-{spec.name}")


@dataclass(frozen=True)
class NodePaths:
    """Where one node keeps its state (``root``) and its sockets (``run``)."""

    root: Path
    run: Path

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def registry_hosts(self) -> Path:
        return self.root / "certs.d"


def containerd_config(paths: NodePaths, registry_port: int) -> str:
    """containerd's TOML: private root/state/sockets, CRI with our CNI, pause image and registry."""
    r = paths.root
    return f"""version = 2
root = "{r}/containerd/root"
state = "{r}/containerd/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{paths.containerd_socket}"

[ttrpc]
  address = "{paths.run}/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{r}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  tolerate_missing_hugetlb_controller = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{paths.cni_conf_dir}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{paths.registry_hosts}"
"""


def registry_hosts_toml(registry_port: int) -> str:
    """containerd's hosts.toml for registry.k8sso.local: our registry only, plain HTTP, no fallback."""
    endpoint = f"http://127.0.0.1:{registry_port}"
    return f'server = "{endpoint}"\n\n[host."{endpoint}"]\n  capabilities = ["pull", "resolve"]\n'


def kubelet_config(net: ClusterNet, node: NodeNet, spec: NodeSpec, paths: NodePaths, port: int, ca: Path,
                   serving_cert: Path, serving_key: Path) -> dict:
    """A KubeletConfiguration: webhook authn/authz, x509 client CA, cgroupfs on this machine's v1 cgroups."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzPort": 0,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        # the kubelet's own cache times (2 min for tokens, 5 min / 30 s for access decisions), as on
        # most clusters: each log stream or exec would otherwise cost the API server an access review
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(serving_cert),
        "tlsPrivateKeyFile": str(serving_key),
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root(net, spec),
        "failCgroupV1": False,
        "failSwapOn": False,
        "clusterDNS": [net.dns_ip],
        "clusterDomain": "cluster.local",
        "resolvConf": "",
        "podLogsDir": str(paths.root / "pod-logs"),
        "volumePluginDir": str(paths.root / "volume-plugins"),
        "maxPods": spec.max_pods,
        "registerWithTaints": [{"key": t["key"], "value": t.get("value", ""), "effect": t["effect"]} for t in spec.taints],
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi"},
        "evictionPressureTransitionPeriod": "5s",
        "nodeStatusUpdateFrequency": "5s",
        "nodeStatusReportFrequency": "1m",
        "syncFrequency": "10s",
        "serializeImagePulls": False,
        "hairpinMode": "hairpin-veth",
        "protectKernelDefaults": False,
        "streamingConnectionIdleTimeout": "5m",
        "shutdownGracePeriod": "0s",
        "runtimeRequestTimeout": "2m",
        "containerLogMaxSize": "50Mi",
    }


def prepare(net: ClusterNet, node: NodeNet, spec: NodeSpec, paths: NodePaths, registry_port: int) -> None:
    """Write the node's files and make its cgroup root in every v1 hierarchy."""
    for d in (paths.root, paths.kubelet_root, paths.cni_conf_dir, paths.run,
              paths.registry_hosts / "registry.k8sso.local", paths.root / "pod-logs"):
        d.mkdir(parents=True, exist_ok=True)
    paths.containerd_config.write_text(containerd_config(paths, registry_port))
    (paths.registry_hosts / "registry.k8sso.local" / "hosts.toml").write_text(registry_hosts_toml(registry_port))
    (paths.cni_conf_dir / "10-k8sso.conflist").write_text(
        json.dumps(cni_config(net, node, paths.root / "cni" / "ipam"), indent=2))
    make_cgroup_root(cgroup_root(net, spec))


def make_cgroup_root(name: str) -> None:
    """The kubelet exits with "cgroup has some missing paths" unless its root exists everywhere."""
    for controller in CGROUP_CONTROLLERS:
        base = Path(CGROUP_BASE) / controller
        if not base.is_dir():
            continue
        path = base / name.strip("/")
        path.mkdir(exist_ok=True)
        if controller == "cpuset":
            for f in ("cpuset.cpus", "cpuset.mems"):
                if not (path / f).read_text().strip():
                    (path / f).write_text((base / f).read_text())


def kubelet_args(spec: NodeSpec, node: NodeNet, paths: NodePaths, kubeconfig: Path) -> list[str]:
    labels = ",".join(f"{k}={v}" for k, v in spec.labels.items())
    return [
        f"--config={paths.kubelet_config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={paths.kubelet_root}",
        f"--cert-dir={paths.root / 'kubelet-pki'}",
        f"--hostname-override={spec.name}",
        f"--node-ip={node.ip}",
        *( [f"--node-labels={labels}"] if labels else [] ),
        "--v=1",
    ]


# ------------------------------------------------------------------ sweep
def _mounts_under(prefix: Path) -> list[str]:
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mount_point = line.split()[4].encode().decode("unicode_escape")
            if mount_point == str(prefix) or mount_point.startswith(str(prefix) + "/"):
                found.append(mount_point)
    return found


def unmount_under(prefix: Path) -> None:
    """Unmount everything mounted below ``prefix``, deepest first (lazily if busy)."""
    for _ in range(3):
        mounts = sorted(set(_mounts_under(prefix)), key=lambda m: m.count("/"), reverse=True)
        if not mounts:
            return
        for mount_point in mounts:
            if subprocess.run(["umount", mount_point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", mount_point], capture_output=True)


def _cgroup_dirs(name: str) -> list[Path]:
    """Every directory of the cgroup root ``name`` in every hierarchy, deepest first."""
    dirs: list[Path] = []
    for controller in CGROUP_CONTROLLERS:
        top = Path(CGROUP_BASE) / controller / name.strip("/")
        if top.is_dir():
            dirs += [Path(d) for d, _, _ in os.walk(top)]
    return sorted(dirs, key=lambda p: len(p.parts), reverse=True)


def cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for d in _cgroup_dirs(name):
        try:
            pids.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        except OSError:
            continue
    return pids


def _kill_until_gone(find: Callable[[], Iterable[int]], timeout: float) -> None:
    """SIGKILL whatever ``find`` returns until it returns nothing (or ``timeout`` passes)."""
    deadline = time.monotonic() + timeout
    while (pids := list(find())) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def kill_cgroup(name: str, timeout: float = 10.0) -> None:
    """SIGKILL every process in the cgroup tree, then remove its directories."""
    _kill_until_gone(lambda: cgroup_pids(name), timeout)
    for d in _cgroup_dirs(name):
        try:
            d.rmdir()
        except OSError:
            pass


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line mentions ``text`` (the shims carry their containerd's socket path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def kill_processes_mentioning(text: str, timeout: float = 5.0) -> None:
    _kill_until_gone(lambda: processes_mentioning(text), timeout)


def shim_sockets(containerd_socket: Path, state: Path) -> list[Path]:
    """The shims' socket files of one containerd: sha256 of its address, namespace and task id."""
    found = []
    tasks = state / "io.containerd.runtime.v2.task"
    for namespace in tasks.iterdir() if tasks.is_dir() else ():
        for task in namespace.iterdir():
            digest = hashlib.sha256(str(containerd_socket / namespace.name / task.name).encode()).hexdigest()
            found.append(SHIM_SOCKETS / digest)
    return found


def sweep(net: ClusterNet, specs: list[NodeSpec]) -> None:
    """Remove what nodes leave behind: processes, cgroups, mounts (netns included), sockets, files."""
    for spec in specs:
        paths = node_paths(net, spec)
        kill_processes_mentioning(str(paths.root))  # the kubelet and containerd
        kill_processes_mentioning(str(paths.run))  # shims (their command line names containerd's socket)
        kill_cgroup(cgroup_root(net, spec))
        for socket in shim_sockets(paths.containerd_socket, paths.root / "containerd" / "state"):
            socket.unlink(missing_ok=True)
        unmount_under(paths.root)
        legacy_logs = Path("/var/log/containers")  # the kubelet links container logs here, whatever podLogsDir says
        if legacy_logs.is_dir():
            for link in legacy_logs.iterdir():
                try:
                    if link.is_symlink() and os.readlink(link).startswith(str(paths.root)):
                        link.unlink()
                except OSError:
                    pass
        shutil.rmtree(paths.run, ignore_errors=True)
        shutil.rmtree(paths.root, ignore_errors=True)


def leftovers(net: ClusterNet, specs: list[NodeSpec]) -> list[str]:
    """What of the nodes is still on the host (for tests after a stop)."""
    found = []
    for spec in specs:
        paths = node_paths(net, spec)
        found += [f"process {pid}" for d in (paths.root, paths.run) for pid in processes_mentioning(str(d))]
        found += [f"cgroup {d}" for d in _cgroup_dirs(cgroup_root(net, spec))]
        found += [f"mount {m}" for m in _mounts_under(paths.root)]
        found += [f"directory {d}" for d in (paths.root, paths.run) if d.exists()]
    return found


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path

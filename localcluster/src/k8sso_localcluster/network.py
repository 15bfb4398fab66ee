"""The local cluster's addresses, bridges and the one NAT rule, all inside this machine.

Every address comes from 198.18.0.0/15 (RFC 2544's benchmarking range, never routed on the
internet), split into *slots* so that several clusters can run side by side (tests do):

- slot ``s`` owns ``198.19.s.0/24`` for host addresses added to ``lo``: ``.1`` is the API server
  and CoreDNS, ``.10 + i`` is node ``i``'s address (its kubelet listens there);
- node ``i`` of slot ``s`` gets the pod range ``198.18.(16s + i).0/24`` on its own bridge;
- the Service range of slot ``s`` is ``198.19.(128 + s).0/24``.

Pods get a route to 198.18.0.0/15 through their bridge and *no default route*: nothing they send can
leave the machine, and there is no masquerade. The only NAT is one DNAT rule per slot that sends the
``kubernetes`` Service address (port 443) to the API server, the part of kube-proxy that in-cluster
clients need. Bridges forward (``net.ipv4.conf.<bridge>.forwarding``), the machine's own interfaces
are left as they are.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

SLOTS = 16
MAX_NODES = 16
POD_NETWORK = "198.18.0.0/15"
LOCK_DIR = Path("/run/k8s-step-operator")


@dataclass(frozen=True)
class NodeNet:
    """One node's addresses."""

    index: int
    ip: str
    pod_cidr: str
    gateway: str
    bridge: str


@dataclass(frozen=True)
class ClusterNet:
    """The addresses of the cluster in ``slot`` (pure: no side effects)."""

    slot: int

    def __post_init__(self) -> None:
        if not 0 <= self.slot < SLOTS:
            raise ValueError(f"slot must be in 0..{SLOTS - 1}, got {self.slot}")

    @property
    def api_ip(self) -> str:
        return f"198.19.{self.slot}.1"

    @property
    def dns_ip(self) -> str:
        return self.api_ip

    @property
    def service_cidr(self) -> str:
        return f"198.19.{128 + self.slot}.0/24"

    @property
    def kubernetes_service_ip(self) -> str:
        return f"198.19.{128 + self.slot}.1"

    @property
    def chain(self) -> str:
        return f"K8SSO-S{self.slot}"

    def node(self, index: int) -> NodeNet:
        if not 0 <= index < MAX_NODES:
            raise ValueError(f"at most {MAX_NODES} nodes per cluster")
        third = 16 * self.slot + index
        return NodeNet(
            index=index,
            ip=f"198.19.{self.slot}.{10 + index}",
            pod_cidr=f"198.18.{third}.0/24",
            gateway=f"198.18.{third}.1",
            bridge=f"k8sso{self.slot}n{index}",
        )

    def host_addresses(self, nodes: int) -> list[str]:
        return [self.api_ip] + [self.node(i).ip for i in range(nodes)]

    def owns_pod_ip(self, ip: str) -> bool:
        block = ipaddress.ip_network(f"198.18.{16 * self.slot}.0/20")
        return ipaddress.ip_address(ip) in block


def cni_config(net: ClusterNet, node: NodeNet, data_dir: Path) -> dict:
    """A CNI conflist: our bridge (no gateway duty, no masquerade), host-local IPAM, one route."""
    return {
        "cniVersion": "0.4.0",
        "name": f"k8sso-{net.slot}-{node.index}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": node.bridge,
                "isGateway": False,  # the bridge address is ours (set up before); no ip_forward flip
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(data_dir),
                    "ranges": [[{"subnet": node.pod_cidr, "gateway": node.gateway}]],
                    "routes": [{"dst": POD_NETWORK, "gw": node.gateway}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": False},
        ],
    }


# ------------------------------------------------------------------- slots
class SlotLock:
    """An exclusive, process-lifetime claim on a slot (flock; released when the holder dies)."""

    def __init__(self, slot: int, handle: IO[str]) -> None:
        self.slot = slot
        self._handle = handle

    @classmethod
    def acquire(cls, owner: str) -> "SlotLock":
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        for slot in range(SLOTS):
            handle = open(LOCK_DIR / f"slot-{slot}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "owner": owner}))
            handle.flush()
            return cls(slot, handle)
        raise RuntimeError(f"all {SLOTS} local-cluster network slots are in use ({LOCK_DIR})")

    def release(self) -> None:
        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()


# --------------------------------------------------------------- the host
def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"iptables {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def setup(net: ClusterNet, nodes: int, api_port: int) -> None:
    """Host addresses on ``lo``, a bridge per node, the DNAT rule for the ``kubernetes`` Service."""
    teardown(net)  # whatever a crashed owner of this slot left
    for address in net.host_addresses(nodes):
        _ip("addr", "add", f"{address}/32", "dev", "lo")
    for i in range(nodes):
        node = net.node(i)
        prefix = node.pod_cidr.split("/")[1]
        _ip("link", "add", node.bridge, "type", "bridge")
        _ip("addr", "add", f"{node.gateway}/{prefix}", "dev", node.bridge)
        _ip("link", "set", node.bridge, "up")
        Path(f"/proc/sys/net/ipv4/conf/{node.bridge}/forwarding").write_text("1")
    _iptables("-t", "nat", "-N", net.chain)
    _iptables("-t", "nat", "-A", net.chain, "-d", f"{net.kubernetes_service_ip}/32", "-p", "tcp", "--dport", "443",
              "-j", "DNAT", "--to-destination", f"{net.api_ip}:{api_port}")
    for hook in ("PREROUTING", "OUTPUT"):
        _iptables("-t", "nat", "-I", hook, "-j", net.chain)


# Chains every kubelet adds to this machine's tables (its canaries and its localnet firewall), by table.
KUBELET_CHAINS = {"filter": ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY"), "nat": ("KUBE-KUBELET-CANARY",),
                  "mangle": ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY")}


def other_slots_in_use(own: int) -> bool:
    """Whether another local cluster holds a slot (its kubelets still need the shared chains)."""
    for slot in range(SLOTS):
        path = LOCK_DIR / f"slot-{slot}.lock"
        if slot == own or not path.exists():
            continue
        with open(path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def remove_kubelet_chains() -> None:
    """Remove the kubelets' own chains (IPv4 and IPv6), once no kubelet of ours runs any more."""
    for tool in ("iptables", "ip6tables"):
        for table, chains in KUBELET_CHAINS.items():
            for chain in chains:
                for hook in ("INPUT", "OUTPUT"):
                    while subprocess.run([tool, "-w", "5", "-t", table, "-D", hook, "-j", chain],
                                         capture_output=True).returncode == 0:
                        pass
                subprocess.run([tool, "-w", "5", "-t", table, "-F", chain], capture_output=True)
                subprocess.run([tool, "-w", "5", "-t", table, "-X", chain], capture_output=True)


def kubelet_chains_left() -> list[str]:
    found = []
    for tool in ("iptables", "ip6tables"):
        for table, chains in KUBELET_CHAINS.items():
            listing = subprocess.run([tool, "-w", "5", "-t", table, "-S"], capture_output=True, text=True).stdout
            found += [f"{tool} {table} {c}" for c in chains if f"-N {c}" in listing.split("\n")]
    return found


def teardown(net: ClusterNet) -> None:
    """Remove every address, bridge and rule of the slot (idempotent)."""
    for hook in ("PREROUTING", "OUTPUT"):
        while _iptables("-t", "nat", "-D", hook, "-j", net.chain, check=False).returncode == 0:
            pass
    _iptables("-t", "nat", "-F", net.chain, check=False)
    _iptables("-t", "nat", "-X", net.chain, check=False)
    for i in range(MAX_NODES):
        bridge = net.node(i).bridge
        if Path(f"/sys/class/net/{bridge}").exists():
            _ip("link", "del", bridge, check=False)
    present = _ip("-o", "-4", "addr", "show", "dev", "lo").stdout
    for address in net.host_addresses(MAX_NODES):
        if f" {address}/32 " in present:
            _ip("addr", "del", f"{address}/32", "dev", "lo", check=False)
    if not other_slots_in_use(net.slot):
        remove_kubelet_chains()


def leftovers(net: ClusterNet) -> list[str]:
    """What of the slot is still on the host (for tests after a stop)."""
    found = []
    present = _ip("-o", "-4", "addr", "show", "dev", "lo").stdout
    found += [f"address {a}" for a in net.host_addresses(MAX_NODES) if f" {a}/32 " in present]
    found += [f"link {net.node(i).bridge}" for i in range(MAX_NODES) if Path(f"/sys/class/net/{net.node(i).bridge}").exists()]
    if _iptables("-t", "nat", "-S", net.chain, check=False).returncode == 0:
        found.append(f"iptables chain {net.chain}")
    if not other_slots_in_use(net.slot):
        found += kubelet_chains_left()
    return found

"""The local cluster's pure plans: addresses per slot, CNI, containerd and kubelet configuration,
CoreDNS, the image admission rule, and deterministic image layers (no cluster needed)."""

from __future__ import annotations

import hashlib
import ipaddress
import tarfile
from pathlib import Path

import pytest
from k8sso_localcluster import addons, images, network, nodes

BENCHMARK_RANGE = ipaddress.ip_network("198.18.0.0/15")


def test_slots_never_overlap_and_stay_in_the_benchmarking_range() -> None:
    seen: set[str] = set()
    bridges: set[str] = set()
    for slot in range(network.SLOTS):
        net = network.ClusterNet(slot)
        addresses = [net.api_ip, net.kubernetes_service_ip] + net.host_addresses(network.MAX_NODES)[1:]
        cidrs = [net.service_cidr] + [net.node(i).pod_cidr for i in range(network.MAX_NODES)]
        for a in addresses:
            assert ipaddress.ip_address(a) in BENCHMARK_RANGE
        for c in cidrs:
            assert ipaddress.ip_network(c).subnet_of(BENCHMARK_RANGE)
            assert c not in seen
            seen.add(c)
        for i in range(network.MAX_NODES):
            node = net.node(i)
            assert len(node.bridge) <= 15 and node.bridge not in bridges  # IFNAMSIZ
            bridges.add(node.bridge)
            assert ipaddress.ip_address(node.gateway) in ipaddress.ip_network(node.pod_cidr)
            assert net.owns_pod_ip(node.gateway)
            assert not network.ClusterNet((slot + 1) % network.SLOTS).owns_pod_ip(node.gateway)
    with pytest.raises(ValueError, match="slot must be in 0..15"):
        network.ClusterNet(network.SLOTS)
    with pytest.raises(ValueError, match="at most 16 nodes"):
        network.ClusterNet(0).node(network.MAX_NODES)


def test_cni_config_has_no_masquerade_no_default_route_no_gateway_duty(tmp_path: Path) -> None:
    net = network.ClusterNet(3)
    node = net.node(1)
    conf = network.cni_config(net, node, tmp_path)
    bridge = conf["plugins"][0]
    assert bridge["type"] == "bridge" and bridge["bridge"] == node.bridge
    assert bridge["ipMasq"] is False and bridge["isGateway"] is False  # isGateway would flip ip_forward
    assert bridge["ipam"]["routes"] == [{"dst": "198.18.0.0/15", "gw": node.gateway}]  # and no 0.0.0.0/0
    assert bridge["ipam"]["ranges"] == [[{"subnet": "198.18.49.0/24", "gateway": "198.18.49.1"}]]
    assert conf["plugins"][1]["snat"] is False


def test_containerd_config_is_private_and_reaches_only_the_local_registry(tmp_path: Path) -> None:
    paths = nodes.node_paths(network.ClusterNet(2), nodes.NodeSpec("local-cpu"))
    text = nodes.containerd_config(paths, 5555)
    assert f'address = "{paths.containerd_socket}"' in text and f'root = "{paths.root}/containerd/root"' in text
    assert len(str(paths.containerd_socket) + ".ttrpc") < 104  # unix socket paths are short, whatever the root
    assert "restrict_oom_score_adj = true" in text  # this machine forbids lowering oom_score_adj
    assert "netns_mounts_under_state_dir = true" in text  # network namespaces live under our state dir
    assert f'sandbox_image = "{nodes.PAUSE_IMAGE}"' in text
    hosts = nodes.registry_hosts_toml(5555)
    assert hosts.startswith('server = "http://127.0.0.1:5555"')  # no fallback to the public host


def test_kubelet_config_secures_the_node(tmp_path: Path) -> None:
    net = network.ClusterNet(0)
    gpu = nodes.default_nodes()[1]
    paths = nodes.NodePaths(tmp_path, tmp_path / "run")
    config = nodes.kubelet_config(net, net.node(1), gpu, paths, 10250, Path("/ca"), Path("/c"), Path("/k"))
    assert config["authentication"]["anonymous"] == {"enabled": False}
    assert config["authentication"]["webhook"]["enabled"] and config["authorization"]["mode"] == "Webhook"
    assert config["authentication"]["x509"] == {"clientCAFile": "/ca"} and config["readOnlyPort"] == 0
    assert config["address"] == "198.19.0.11" and config["clusterDNS"] == [net.dns_ip]
    assert config["cgroupRoot"] == "/k8sso-s0-local-gpu" and config["failCgroupV1"] is False
    assert config["registerWithTaints"] == [{"key": "gpu", "value": "present", "effect": "NoSchedule"}]
    assert config["resolvConf"] == ""  # pods get cluster DNS only, never this machine's resolver
    args = nodes.kubelet_args(gpu, net.node(1), paths, Path("/kc"))
    assert "--node-ip=198.19.0.11" in args and "--hostname-override=local-gpu" in args
    assert any(a.startswith("--node-labels=") and "gpu-type=nvidia-tesla-v100" in a for a in args)
    assert gpu.extended_resources == {"nvidia.com/gpu": "2"}


def test_corefile_serves_the_cluster_zone_and_forwards_nothing() -> None:
    text = addons.corefile("198.19.2.1", Path("/k/kubeconfig"), 9999)
    assert "bind 198.19.2.1" in text and "kubernetes cluster.local in-addr.arpa ip6.arpa" in text
    assert "forward" not in text and "health 198.19.2.1:9999" in text


def test_image_policy_covers_every_container_list() -> None:
    policy = next(o for o in addons.objects() if o["kind"] == "ValidatingAdmissionPolicy")
    expression = policy["spec"]["validations"][0]["expression"]
    for field in ("containers", "initContainers", "ephemeralContainers"):
        assert f"object.spec.{field}.all(c, c.image.startsWith('registry.k8sso.local/'))" in expression
    assert addons.resource_path(policy) == (
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/k8sso-local-images")


def test_layers_are_deterministic(tmp_path: Path) -> None:
    entries = [("a/b", b"data", 0o644), ("a", None, 0o755), ("z", b"", 0o600)]
    first = images.write_layer(tmp_path / "1.tar", entries, {"a/link": "b"})
    second = images.write_layer(tmp_path / "2.tar", list(reversed(entries)), {"a/link": "b"})
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    with tarfile.open(first) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["a", "a/b", "z", "a/link"]
    assert {(m.uid, m.gid, m.mtime) for m in members} == {(0, 0, images.SOURCE_DATE_EPOCH)}
    assert images.ref("step", "latest") == "registry.k8sso.local/k8sso/step:latest"

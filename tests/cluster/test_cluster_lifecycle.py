"""A local cluster whose owner is SIGKILLed with a pod running leaves nothing on this machine:
no process, mount, cgroup, link, address or NAT chain (the reaper cleans up after it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from k8sso_localcluster import network, nodes

pytestmark = pytest.mark.cluster

OWNER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from k8sso_localcluster.controlplane import LocalCluster
    from k8sso_localcluster.images import ref

    cluster = LocalCluster(root=Path(sys.argv[1]), keep_root=True).start()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
           "spec": {"containers": [{"name": "c", "image": ref("busybox", "latest"),
                                    "command": ["sleep", "3600"]}], "terminationGracePeriodSeconds": 1}}
    cluster.request("POST", "/api/v1/namespaces/default/pods", pod)
    while cluster.request("GET", "/api/v1/namespaces/default/pods/sleeper")["status"].get("phase") != "Running":
        time.sleep(0.1)
    print(json.dumps({"slot": cluster.net.slot}), flush=True)
    time.sleep(3600)
    """
)


def test_a_killed_owner_leaves_nothing_behind(tmp_path: Path) -> None:
    root = tmp_path / "cluster"
    errors = tmp_path / "owner.err"
    with errors.open("w") as stderr:
        owner = subprocess.Popen([sys.executable, "-c", OWNER, str(root)], stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        line = owner.stdout.readline() if owner.stdout else ""
        assert line, f"the owner exited ({owner.wait()}) before its pod ran: {errors.read_text()[-3000:]}"
        net = network.ClusterNet(json.loads(line)["slot"])
        specs = nodes.default_nodes()
        assert nodes.cgroup_pids(nodes.cgroup_root(net, specs[0])) or nodes.cgroup_pids(nodes.cgroup_root(net, specs[1]))
        assert network.leftovers(net)  # the cluster's network is there while it runs
    finally:
        if owner.poll() is None:
            os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
    deadline = time.monotonic() + 60
    while (left := network.leftovers(net) + nodes.leftovers(net, specs) + [
        f"process {pid}" for pid in nodes.processes_mentioning(str(root))
    ]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == []
    assert nodes.processes_mentioning("sleep 3600") == []  # the container's process is gone
    assert sorted(p.name for p in root.iterdir()) == ["logs"]  # only the logs are kept


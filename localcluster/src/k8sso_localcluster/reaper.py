"""Cleans the host after a local cluster whose owning process died without ``stop()``.

Started by ``LocalCluster.start`` in its own session (so it outlives its parent), with one JSON
argument: ``{"pid", "slot", "root", "nodes"}``. It waits for that pid to exit (pidfd), then kills
what is left of the cluster's processes and containers, unmounts, removes the cgroups, links,
addresses and the NAT chain, and deletes the state directory. SIGTERM (a normal ``stop()``) ends it
without doing anything.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import sys
from pathlib import Path

from . import network, nodes


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        fd = os.pidfd_open(spec["pid"])
    except ProcessLookupError:
        fd = None
    if fd is not None:
        select.select([fd], [], [])  # readable when the process has exited
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    net = network.ClusterNet(spec["slot"])
    root = Path(spec["root"])
    print(f"owner {spec['pid']} gone: cleaning slot {net.slot} and {root}", flush=True)
    nodes.kill_processes_mentioning(str(root))  # the control plane: SIGTERM from its dead parent may not end it
    nodes.sweep(net, [nodes.NodeSpec(name) for name in spec["nodes"]])
    network.teardown(net)
    log_dir = root / "logs"
    for entry in root.iterdir() if root.is_dir() else ():
        if entry != log_dir:
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

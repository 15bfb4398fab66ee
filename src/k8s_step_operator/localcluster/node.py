"""Process node agent: a small kubelet that runs the containers of its pods as local processes.

Started by ``LocalCluster`` as ``python -m k8s_step_operator.localcluster.node --config FILE.json``
and stopped with SIGTERM (it then kills its containers and exits within a few seconds).
The pieces live in ``localcluster.kubelet``.

Test hook: annotating a pod with ``localcluster.k8s-step-operator.io/evict: "<message>"``
makes the node do what the kubelet's eviction manager does — kill the containers, set
phase Failed, reason Evicted, that message, and a DisruptionTarget condition.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import signal
import sys

from .kubelet.agent import Agent
from .kubelet.config import NodeConfig
from .kubelet.podworker import EVICT_ANNOTATION

__all__ = ["EVICT_ANNOTATION", "main"]
_CLONE_NEWNS = 0x00020000
_MS_REC, _MS_PRIVATE = 16384, 1 << 18


def enter_private_mount_namespace() -> bool:
    """Give the agent its own mount namespace, so its tmpfs volumes vanish with it (call before threads)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.unshare(_CLONE_NEWNS) != 0:
        return False
    return libc.mount(b"none", b"/", None, ctypes.c_ulong(_MS_REC | _MS_PRIVATE), None) == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="k8s_step_operator.localcluster.node", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="node configuration (JSON)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s")
    config = NodeConfig.load(args.config)
    private = enter_private_mount_namespace()
    if not private:
        logging.getLogger(__name__).warning("no private mount namespace: memory volumes use plain directories")
    agent = Agent(config, private_mounts=private)
    signal.signal(signal.SIGTERM, agent.request_stop)
    signal.signal(signal.SIGINT, agent.request_stop)
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Supervisor of a background local cluster: ``python -m k8sso_localcluster.serve --root DIR``.

Runs :class:`LocalCluster` in ``DIR/state`` until SIGTERM or SIGINT, then stops
every component, keeps the component logs in ``DIR/logs`` and removes the
rest of the state (certificates, etcd data, volumes, kubeconfigs, markers).
Files are described in :mod:`k8sso_localcluster.cli_state`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Optional

from .cli_state import ClusterDir, remove_state, supervisor_pid, write_json
from .controlplane import LocalCluster

STATUS_INTERVAL = 2.0


class Shutdown(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT.

    A BaseException (like KeyboardInterrupt) so that retry loops catching
    ``Exception`` while the cluster starts cannot swallow it.
    """


def _on_signal(signum: int, _frame: Any) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)  # a second signal must not interrupt the clean-up
    raise Shutdown(signal.Signals(signum).name)


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} [serve {os.getpid()}] {message}", flush=True)


def _report(cdir: ClusterDir, cluster: LocalCluster) -> None:
    states = cluster.status()
    write_json(
        cdir.status_file,
        {
            "pid": os.getpid(),
            "updated": time.time(),
            "components": {
                name: {"pid": proc.pid, "state": states.get(name, "unknown")}
                for name, proc in cluster.procs.items()
            },
        },
    )


def serve(cdir: ClusterDir, timeout: float, nodes: bool = True) -> int:
    """Run the cluster until a signal; returns the exit code."""
    cluster: Optional[LocalCluster] = None
    code = 0
    try:
        remove_state(cdir)  # stale state of a supervisor that was killed
        cluster = LocalCluster(root=cdir.state, keep_root=True, nodes=None if nodes else [])
        _log(f"starting the local cluster in {cdir.state}")
        cluster.start(timeout=timeout)
        shutil.copyfile(cluster.kubeconfig, cdir.kubeconfig)
        cdir.kubeconfig.chmod(0o600)
        _report(cdir, cluster)
        write_json(
            cdir.ready_file,
            {"pid": os.getpid(), "kubeconfig": str(cdir.kubeconfig), "server": cluster.server,
             "slot": cluster.net.slot if cluster.net else None},
        )
        _log(f"ready: {cluster.server}; kubeconfig {cdir.kubeconfig}")
        while True:
            time.sleep(STATUS_INTERVAL)
            _report(cdir, cluster)
    except Shutdown as stop:
        _log(f"{stop}: stopping")
    except Exception:  # noqa: BLE001 - logged for `up` to show
        _log("failed:\n" + traceback.format_exc())
        code = 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        if cluster is not None:
            cluster.stop()
        remove_state(cdir)
        _log("stopped")
    return code


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point: one supervisor per directory."""
    parser = argparse.ArgumentParser(prog="python -m k8sso_localcluster.serve")
    parser.add_argument("--root", required=True, type=Path, help="directory of this cluster")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for the cluster")
    parser.add_argument("--no-nodes", action="store_true", help="control plane only, no nodes")
    args = parser.parse_args(argv)
    cdir = ClusterDir.at(args.root)
    cdir.root.mkdir(parents=True, exist_ok=True)
    other = supervisor_pid(cdir)
    if other is not None and other != os.getpid():
        _log(f"another supervisor (pid {other}) already runs the cluster in {cdir.root}")
        return 3
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    cdir.pid_file.write_text(f"{os.getpid()}\n")
    try:
        return serve(cdir, args.timeout, nodes=not args.no_nodes)
    finally:
        cdir.pid_file.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())

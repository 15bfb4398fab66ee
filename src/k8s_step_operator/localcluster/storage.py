"""Local storage for the local cluster: hostPath provisioner, snapshot CRDs and snapshotter.

Run as ``python -m k8s_step_operator.localcluster.storage --kubeconfig ADMIN --state-dir DIR``
once the API server is ready. Start-up installs (create or replace) the
``snapshot.storage.k8s.io/v1`` CRDs, waits for them to be Established, applies the
StorageClasses ``standard`` (default), ``local-wffc`` and ``local-rwo`` and the default
VolumeSnapshotClass ``local-snapshots``, starts the watches and, once every watch has
listed, writes ``DIR/ready`` (JSON: pid, time). The process runs until SIGTERM/SIGINT
and exits within about a second; ``DIR/ready`` is removed on the way out.

Layout under DIR: ``pv/<pv-name>`` (volume directories), ``snapshots/<content-name>``
(snapshot copies), ``ready``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from .storage_install import install
from .storage_kube import EventRecorder, Kube, PathLocks, log, run_workers
from .storage_provisioner import PROVISIONER, Provisioner
from .storage_snapshotter import Snapshotter

__all__ = ["PROVISIONER", "READY_FILE", "main", "run"]

READY_FILE = "ready"
RESYNC_SECONDS = 10.0
EXIT_GRACE_SECONDS = 1.0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m k8s_step_operator.localcluster.storage", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--kubeconfig", required=True, help="admin kubeconfig of the local cluster")
    parser.add_argument("--state-dir", required=True, type=Path, help="where volumes and snapshots live")
    parser.add_argument("--workers", type=int, default=2, help="worker threads per controller")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def _write_ready(state_dir: Path) -> Path:
    """Atomically write ``<state-dir>/ready``."""
    path = state_dir / READY_FILE
    tmp = state_dir / f".{READY_FILE}.tmp"
    tmp.write_text(json.dumps({"pid": os.getpid(), "time": time.time(), "provisioner": PROVISIONER}) + "\n")
    os.replace(tmp, path)
    return path


def run(kubeconfig: str, state_dir: Path, stop: threading.Event, workers: int = 2) -> None:
    """Install manifests, start both controllers, signal readiness, and block until ``stop`` is set."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / READY_FILE).unlink(missing_ok=True)
    kube = Kube(kubeconfig)
    started = time.monotonic()
    install(kube, stop)
    log.info("manifests installed in %.2fs", time.monotonic() - started)

    locks = PathLocks()
    events = EventRecorder(kube, "localcluster-hostpath-provisioner")
    snapshot_events = EventRecorder(kube, "localcluster-snapshotter")
    provisioner = Provisioner(kube, state_dir, stop, locks, events, snapshot_data_dir=lambda c: snapshotter.data_dir(c))
    snapshotter = Snapshotter(kube, state_dir, stop, locks, snapshot_events, claims=provisioner.claims)
    snapshotter.snapshots.add_handler(provisioner.on_snapshot)
    informers = provisioner.informers + snapshotter.informers
    for informer in informers:
        informer.start()
    for informer in informers:
        while not informer.synced.wait(0.1):
            if stop.is_set():
                return
    run_workers("provisioner", provisioner.queue, provisioner.sync, stop, workers)
    run_workers("snapshotter", snapshotter.queue, snapshotter.sync, stop, workers)
    ready = _write_ready(state_dir)
    log.info("storage ready in %.2fs (%s)", time.monotonic() - started, ready)
    try:
        while not stop.wait(RESYNC_SECONDS):
            provisioner.resync()
            snapshotter.resync()
    finally:
        (state_dir / READY_FILE).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _arguments(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(threadName)s %(message)s",
        stream=sys.stdout,
    )
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()
        # Watches block in socket reads on daemon threads: never wait for them longer than this.
        timer = threading.Timer(EXIT_GRACE_SECONDS, _hard_exit, (args.state_dir,))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        run(args.kubeconfig, args.state_dir, stop, args.workers)
    except InterruptedError:
        pass
    except Exception:
        log.exception("storage controller failed")
        return 1
    log.info("stopped")
    return 0


def _hard_exit(state_dir: Path, code: int = 0) -> None:
    """Leave now: daemon threads sit in blocking watch reads and need not be joined."""
    (state_dir / READY_FILE).unlink(missing_ok=True)
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    _code = main()
    sys.stdout.flush()
    os._exit(_code)

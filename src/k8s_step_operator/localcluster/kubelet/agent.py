"""The node agent: wires the pieces together and feeds pod workers from a pod watch."""

from __future__ import annotations

import logging
import shutil
import signal
import threading
import time

from .apiclient import ApiClient, ApiError
from .cgroups import CgroupManager
from .config import NodeConfig
from .envvars import service_env
from .events import EventRecorder
from .images import ImagePolicy
from .logs import LogStore
from .logserver import LogServer
from .mountpoints import MountpointRegistry
from .nodestatus import NodeStatus
from .objects import ApiObjects
from .podworker import NodeContext, PodWorker
from .runtime import ContainerProcess, Launcher

log = logging.getLogger(__name__)
SHUTDOWN_GRACE = 2.0


class Agent:
    """A process node: registers itself, runs the pods bound to it, serves their logs."""

    def __init__(self, config: NodeConfig, private_mounts: bool = False) -> None:
        self.config = config
        self.api = ApiClient(config.kubeconfig)
        admin = ApiClient(config.admin_kubeconfig) if config.admin_kubeconfig and config.admin_kubeconfig.exists() else None
        self.node = NodeStatus(self.api, config, admin)
        state = config.state_dir
        (state / "pods").mkdir(parents=True, exist_ok=True)
        self.logs = LogStore(state / "logs")
        self.cgroups = CgroupManager(config.name)
        self.ctx = NodeContext(
            node=config.name,
            api=self.api,
            objects=ApiObjects(self.api),
            events=EventRecorder(self.api, config.name),
            logs=self.logs,
            launcher=Launcher(),
            cgroups=self.cgroups,
            mountpoints=self._mountpoints(),
            images=ImagePolicy(config.images),
            allocatable=self.node.allocatable,
            services=service_env(config.api_host, config.api_port),
            pods_dir=state / "pods",
            backoff_initial=config.backoff_initial,
            backoff_max=config.backoff_max,
            private_mounts=private_mounts,
        )
        self.server = LogServer(config.port, config.serving_cert, config.serving_key, config.ca_cert, self.logs)
        self.workers: dict[str, PodWorker] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._swept = False

    @staticmethod
    def _mountpoints() -> MountpointRegistry:
        registry = MountpointRegistry()
        registry.sweep()
        return registry

    # ------------------------------------------------------------ lifecycle
    def run(self) -> None:
        """Serve until ``request_stop``; then kill every container and return."""
        self.server.start()
        self.node.register()
        self.node.start()
        threading.Thread(target=self._watch_pods, name="pod-watch", daemon=True).start()
        log.info("node agent %s serving on 127.0.0.1:%d", self.config.name, self.config.port)
        while not self._stop.wait(1.0):
            pass
        self.shutdown()

    def request_stop(self, *_args: object) -> None:
        self._stop.set()
        self.node.stop()  # also ends a registration still retrying

    def shutdown(self) -> None:
        """SIGTERM every container, SIGKILL what is left after a short grace; stop serving."""
        self.ctx.shutting_down = True
        self.node.stop()
        with self._lock:
            workers = list(self.workers.values())
        procs: list[ContainerProcess] = []
        for worker in workers:
            procs += worker.kill_now()
        deadline = time.monotonic() + SHUTDOWN_GRACE
        for proc in procs:
            proc.wait(max(deadline - time.monotonic(), 0.0))
        for proc in procs:
            if proc.running:
                proc.signal(signal.SIGKILL)
        for proc in procs:
            proc.wait(2.0)
        try:
            self.server.stop()
        except OSError:
            pass
        self.cgroups.cleanup()
        self.ctx.events.close()
        log.info("node agent %s stopped (%d containers killed)", self.config.name, len(procs))

    # ------------------------------------------------------------ pod source
    def _watch_pods(self) -> None:
        selector = f"spec.nodeName={self.config.name}"
        rv: str | None = None
        delay = 0.2
        while not self._stop.is_set():
            try:
                if rv is None:
                    listing = self.api.get("/api/v1/pods", fieldSelector=selector)
                    rv = listing["metadata"]["resourceVersion"]
                    self._reconcile(listing.get("items") or [])
                query = {"fieldSelector": selector, "resourceVersion": rv, "allowWatchBookmarks": "true",
                         "timeoutSeconds": 300}
                for event in self.api.watch("/api/v1/pods", query):
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            rv = None
                            break
                        raise ApiError(int(obj.get("code") or 500), obj, "WATCH", "/api/v1/pods")
                    rv = obj["metadata"]["resourceVersion"]
                    if kind in ("ADDED", "MODIFIED"):
                        self._upsert(obj)
                    elif kind == "DELETED":
                        self._deleted(obj)
                delay = 0.2
            except ApiError as exc:
                if exc.status == 410:
                    rv = None
                    continue
                log.warning("pod watch: %s", exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
            except Exception as exc:  # noqa: BLE001 - connection trouble; resume from rv
                if self._stop.is_set():
                    return
                log.warning("pod watch interrupted: %s", exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _reconcile(self, pods: list[dict]) -> None:
        uids = {p["metadata"]["uid"] for p in pods}
        for pod in pods:
            self._upsert(pod)
        with self._lock:
            stale = [w for uid, w in self.workers.items() if uid not in uids]
        for worker in stale:
            worker.gone()
        if not self._swept:
            self._swept = True
            self._sweep(uids)

    def _sweep(self, known: set[str]) -> None:
        """Remove state left by an earlier agent for pods that no longer exist."""
        for entry in (self.config.state_dir / "pods").iterdir():
            if entry.is_dir() and entry.name not in known:
                shutil.rmtree(entry, ignore_errors=True)
        for entry in self.logs.root.iterdir():
            if entry.is_dir() and entry.name.rsplit("_", 1)[-1] not in known:
                shutil.rmtree(entry, ignore_errors=True)

    def _upsert(self, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            worker = self.workers.get(uid)
            if worker is None:
                if self.ctx.shutting_down:
                    return
                worker = PodWorker(self.ctx, pod, self._worker_done)
                self.workers[uid] = worker
                worker.start()
                return
        worker.update(pod)

    def _deleted(self, pod: dict) -> None:
        with self._lock:
            worker = self.workers.get(pod["metadata"]["uid"])
        if worker is not None:
            worker.gone()

    def _worker_done(self, uid: str) -> None:
        with self._lock:
            self.workers.pop(uid, None)

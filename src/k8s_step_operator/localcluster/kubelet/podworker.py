"""One pod's lifecycle on the node: volumes, images, init containers, containers, restarts, termination.

A ``PodWorker`` thread re-evaluates the pod whenever something happens (a watch
update, a container exit, a timer) — level-triggered like the kubelet's pod workers.
Container exits are reported by the container's own thread, which writes the
terminated status immediately. Slow calls (API reads, kills) happen without the
worker's lock held, so an exit is never delayed by them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import images, security
from .apiclient import ApiClient, ApiError, pod_path, retry
from .cgroups import CgroupManager
from .envvars import ConfigError, base_env, container_env
from .events import EventRecorder
from .imagepull import ensure_image
from .launchspec import argv_for, memory_limit, mounts_for, termination_message
from .logs import LogStore
from .mountpoints import MountpointRegistry
from .objects import ApiObjects, ObjectReadError
from .runtime import ContainerProcess, ExitInfo, LaunchSpec, Launcher
from .status import ConditionClock, ContainerRecord, compute_phase, conditions, is_initialized, pod_status
from .timeutil import parse_rfc3339
from .volumes import PodVolumes, VolumeError

log = logging.getLogger(__name__)

EVICT_ANNOTATION = "localcluster.k8s-step-operator.io/evict"
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
RESYNC_VOLUMES = 60.0
BACKOFF_RESET_AFTER = 600.0  # a container that ran this long starts a fresh back-off


@dataclass
class NodeContext:
    """What every pod worker of a node shares."""

    node: str
    api: ApiClient
    objects: ApiObjects
    events: EventRecorder
    logs: LogStore
    launcher: Launcher
    cgroups: CgroupManager
    mountpoints: MountpointRegistry
    images: images.ImagePolicy
    allocatable: dict[str, str]
    services: dict[str, str]
    pods_dir: Path
    backoff_initial: float = 10.0
    backoff_max: float = 300.0
    private_mounts: bool = False  # the agent has its own mount namespace: tmpfs volumes are safe
    shutting_down: bool = False


class PodWorker:
    """Drives one pod from Pending to a terminal phase and deletion, in its own thread."""

    def __init__(self, ctx: NodeContext, pod: dict, on_done: Callable[[str], None]) -> None:
        meta = pod["metadata"]
        self.ctx = ctx
        self.pod = pod
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self._on_done = on_done
        self.cond = threading.Condition(threading.RLock())
        self._write_lock = threading.Lock()
        self._dirty = True
        self._wake_at = float("inf")
        self._gone = False
        self._stopping = False
        self.dir = ctx.pods_dir / self.uid
        spec = pod["spec"]
        has_inits = bool(spec.get("initContainers"))
        default_wait = "PodInitializing" if has_inits else "ContainerCreating"
        self.inits = [ContainerRecord(c["name"], c.get("image", ""), init=True, sidecar=c.get("restartPolicy") == "Always",
                                      waiting_reason=default_wait) for c in spec.get("initContainers") or []]
        self.regular = [ContainerRecord(c["name"], c.get("image", ""), waiting_reason=default_wait)
                        for c in spec.get("containers") or []]
        self.records = {r.name: r for r in [*self.inits, *self.regular]}
        self.specs = {c["name"]: c for c in [*(spec.get("initContainers") or []), *spec.get("containers", [])]}
        self.procs: dict[str, ContainerProcess] = {}
        self.volumes = PodVolumes(pod, self.dir, ctx.objects, ctx.allocatable, tmpfs=ctx.private_mounts)
        self.volumes_ready = False
        self._volume_retry = (0.0, 0.5)  # (not before, next delay)
        self._refresh_at = 0.0
        status = pod.get("status") or {}
        self.start_time = parse_rfc3339(status["startTime"]) if status.get("startTime") else time.time()
        self.terminal_phase: str | None = None
        self.reason: str | None = None
        self.message: str | None = None
        self.extra_conditions: list[dict] = []
        self._pod_initialized = False
        self.clock = ConditionClock(status.get("conditions"))
        self._last_written: str | None = None
        self._adopt(status)
        self.pod_logs = ctx.logs.register(self.namespace, self.name, self.uid, list(self.records), self._log_waiting)

    # ----------------------------------------------------------- adoption
    def _adopt(self, status: dict) -> None:
        """Take over a pod seen before this agent started (its processes died with the old agent)."""
        known = {s["name"]: s for s in [*(status.get("initContainerStatuses") or []),
                                         *(status.get("containerStatuses") or [])]}
        now = time.time()
        for rec in self.records.values():
            old = known.get(rec.name)
            if not old:
                continue
            rec.restart_count = int(old.get("restartCount") or 0)
            rec.container_id = old.get("containerID")
            rec.image_id = old.get("imageID", "")
            rec.last_terminated = (old.get("lastState") or {}).get("terminated")
            state = old.get("state") or {}
            if state.get("terminated"):
                rec.state, rec.terminated, rec.ever_started = "terminated", dict(state["terminated"]), True
            elif state.get("running"):
                started = parse_rfc3339(state["running"].get("startedAt") or "1970-01-01T00:00:00Z")
                rec.ever_started = True
                rec.terminate(137, "ContainerStatusUnknown", started, now,
                              message="The container could not be located when the pod was terminated")
            elif state.get("waiting"):
                rec.wait(state["waiting"].get("reason", rec.waiting_reason), state["waiting"].get("message"))
        if status.get("phase") in ("Succeeded", "Failed"):
            self.terminal_phase = status["phase"]
            self.reason, self.message = status.get("reason"), status.get("message")
            self.volumes_ready = True
            with self.cond:
                self._last_written = json.dumps(self._snapshot(), sort_keys=True)

    # ------------------------------------------------------------ inputs
    @staticmethod
    def _fingerprint(pod: dict) -> str:
        """What a sync depends on: spec and metadata, not status (like the kubelet's pod config)."""
        meta = {k: v for k, v in pod["metadata"].items() if k not in ("resourceVersion", "managedFields")}
        return json.dumps([meta, pod.get("spec")], sort_keys=True)

    def update(self, pod: dict) -> None:
        """A newer version of the pod from the watch; status-only changes (our own writes) do not sync."""
        with self.cond:
            if pod["metadata"].get("uid") != self.uid:
                return
            changed = self._fingerprint(pod) != self._fingerprint(self.pod)
            self.pod = pod
            self.volumes.pod = pod
            if changed:
                self._poke()

    def gone(self) -> None:
        """The pod object was deleted (or vanished from a relist)."""
        with self.cond:
            self._gone = True
            self._poke()

    def _poke(self) -> None:
        self._dirty = True
        self.cond.notify_all()

    def _wake(self, at: float) -> None:
        self._wake_at = min(self._wake_at, at)

    # -------------------------------------------------------------- loop
    def start(self) -> None:
        threading.Thread(target=self.run, name=f"pod-{self.namespace}/{self.name}", daemon=True).start()

    def run(self) -> None:
        failures = 0
        while True:
            with self.cond:
                while not self._dirty and time.time() < self._wake_at:
                    self.cond.wait(min(self._wake_at - time.time(), 3600.0))
                self._dirty = False
                self._wake_at = float("inf")
            if self.ctx.shutting_down:
                return
            try:
                if self._sync():
                    break
                failures = 0
            except Exception:  # noqa: BLE001 - one pod's bug must not stop the agent
                failures += 1
                log.exception("sync of pod %s/%s failed", self.namespace, self.name)
                with self.cond:
                    self._wake(time.time() + min(0.5 * 2**failures, 10.0))
        self._cleanup()

    def _sync(self) -> bool:
        """One evaluation; True when the worker is finished (pod deleted)."""
        with self.cond:
            pod, gone = self.pod, self._gone
        meta = pod["metadata"]
        if gone:
            self._stop_all(self._grace(pod), "the pod was deleted")
            return True
        if meta.get("deletionTimestamp"):
            return self._terminate_and_delete()
        if self.terminal_phase:
            with self.cond:
                leftovers = any(p.running for p in self.procs.values())  # sidecars
            if leftovers:
                self._stop_all(self._grace(pod), "the pod has completed")
            return False
        evict = (meta.get("annotations") or {}).get(EVICT_ANNOTATION)
        if evict is not None:
            self._fail_pod("Evicted", evict or "Evicted by the test hook", grace=0.0, event="Evicted",
                           disruption=True)
            return False
        deadline = pod["spec"].get("activeDeadlineSeconds")
        if deadline is not None:
            due = self.start_time + float(deadline)
            if time.time() >= due:
                self._fail_pod("DeadlineExceeded", DEADLINE_MESSAGE, grace=self._grace(pod), event="DeadlineExceeded")
                return False
            with self.cond:
                self._wake(due)
        if not self.volumes_ready:
            if not self._setup_volumes():
                return False
        elif time.time() >= self._refresh_at:
            token_due = self.volumes.refresh()
            self._refresh_at = min(time.time() + RESYNC_VOLUMES, token_due)
        with self.cond:
            self._wake(self._refresh_at)
        for name, restart in self._plan():
            self._start(name, restart)
        self.write_status()
        return False

    # ------------------------------------------------------------ volumes
    def _setup_volumes(self) -> bool:
        not_before, delay = self._volume_retry
        now = time.time()
        if now < not_before:
            with self.cond:
                self._wake(not_before)
            return False
        try:
            self.volumes.setup()
        except (VolumeError, ObjectReadError) as exc:
            self.ctx.events.emit(self.pod, "Warning", "FailedMount", str(exc))
            self._volume_retry = (now + delay, min(delay * 2, 4.0))
            with self.cond:
                self._wake(now + delay)
            self.write_status()
            return False
        (self.dir / "work").mkdir(parents=True, exist_ok=True)
        (self.dir / "work").chmod(0o777)  # the default working dir, shared like an emptyDir by any user
        with self.cond:
            self.volumes_ready = True
            self._refresh_at = time.time() + RESYNC_VOLUMES
        return True

    # ------------------------------------------------------------- planning
    def _restart_wanted(self, rec: ContainerRecord) -> bool:
        if rec.sidecar:
            return True
        policy = self.pod["spec"].get("restartPolicy") or "Always"
        exit_code = (rec.terminated or rec.last_terminated or {}).get("exitCode", 1)
        return policy == "Always" or (policy == "OnFailure" and exit_code != 0)

    def _in_backoff(self, rec: ContainerRecord, now: float) -> bool:
        """Set CrashLoopBackOff while a restart must wait; True if it must."""
        until = rec.extra.get("backoff_until", 0.0)
        if now >= until:
            return False
        delay = rec.extra.get("backoff_delay", 0.0)
        rec.wait("CrashLoopBackOff", f"back-off {int(delay)}s restarting failed container={rec.name} "
                                     f"pod={self.name}_{self.namespace}({self.uid})")
        if not rec.extra.get("backoff_event_sent"):
            rec.extra["backoff_event_sent"] = True
            self.ctx.events.emit(self.pod, "Warning", "BackOff", f"Back-off restarting failed container {rec.name} in "
                                 f"pod {self.name}_{self.namespace}({self.uid})", rec.name, rec.init)
        self._wake(until)
        return True

    def _plan(self) -> list[tuple[str, bool]]:
        """Which containers to (re)start now: (name, is_restart)."""
        now = time.time()
        todo: list[tuple[str, bool]] = []
        with self.cond:
            if self._stopping:
                return []
            for rec in self.inits:
                if rec.sidecar:
                    if rec.running:
                        continue
                    if rec.ever_started:  # a sidecar that stopped: restart it, never block on it again
                        if not self._in_backoff(rec, now):
                            todo.append((rec.name, True))
                        continue
                    todo.append((rec.name, False))
                    return todo  # the next init container waits until this sidecar runs
                if rec.succeeded:
                    continue
                if rec.running:
                    return todo
                if rec.ever_started:  # failed: restart (OnFailure/Always) or the pod fails (Never)
                    if self._restart_wanted(rec) and not self._in_backoff(rec, now):
                        todo.append((rec.name, True))
                    return todo
                todo.append((rec.name, False))
                return todo
            for rec in self.regular:
                if rec.running:
                    continue
                if rec.ever_started:
                    if self._restart_wanted(rec) and not self._in_backoff(rec, now):
                        todo.append((rec.name, True))
                    continue
                todo.append((rec.name, False))
        return todo

    # ------------------------------------------------------------ starting
    def _retry_later(self, rec: ContainerRecord, now: float) -> None:
        delay = rec.extra.get("retry_delay", 0.5)
        rec.extra["retry_at"] = now + delay
        rec.extra["retry_delay"] = min(delay * 2, 5.0)
        self._wake(now + delay)

    def _image_ready(self, rec: ContainerRecord, c: dict, now: float) -> bool:
        """Pretend to pull the container's image (see imagepull); schedule the next look if not ready."""
        ready, wake = ensure_image(rec, c, self.ctx.images, self._emitter(rec), now, self.ctx.backoff_initial,
                                   self.ctx.backoff_max)
        if wake is not None:
            self._wake(wake)
        return ready

    def _emitter(self, rec: ContainerRecord) -> Callable[[str, str, str], None]:
        return lambda type_, reason, message: self.ctx.events.emit(self.pod, type_, reason, message, rec.name,
                                                                    rec.init)

    def _start(self, name: str, restart: bool) -> None:
        rec, c = self.records[name], self.specs[name]
        now = time.time()
        with self.cond:
            if now < rec.extra.get("retry_at", 0.0):
                self._wake(rec.extra["retry_at"])
                return
            if not self._image_ready(rec, c, now):
                return
        try:
            env = container_env(self.pod, c, self.ctx.objects, self.ctx.allocatable, self.ctx.services)
            argv = argv_for(c, env)
        except (ConfigError, ObjectReadError) as exc:
            return self._config_error(rec, "CreateContainerConfigError", str(exc))
        except ValueError as exc:
            return self._config_error(rec, "RunContainerError", str(exc))
        cdir = self.dir / "containers" / name
        cdir.mkdir(parents=True, exist_ok=True)
        term_log = cdir / "termination-log"
        user = security.run_as(self.pod, c)
        try:
            mounts = mounts_for(c, self.volumes.paths, env, term_log, image_root=cdir / "image",
                                image_owner=(user.uid, user.gid) if user and user.uid else None)
            limit = memory_limit(c)
        except (ConfigError, ValueError) as exc:
            return self._config_error(rec, "CreateContainerConfigError", str(exc))
        refusal = security.non_root_violation(self.pod, c)
        if refusal:
            return self._config_error(rec, "CreateContainerConfigError", refusal)
        term_log.write_bytes(b"")
        term_log.chmod(0o666)  # any container user may write its termination message
        workdir = c.get("workingDir") or str(self.dir / "work")
        if user and user.uid != 0 and "HOME" not in env:
            env = {**env, "HOME": security.home_for(user.uid)}
        with self.cond:
            if self._stopping or rec.running or self.terminal_phase:
                return
            count = rec.restart_count + (1 if restart and rec.ever_started else 0)
            key = f"{self.uid}_{name}_{count}"
            spec = LaunchSpec(key=key, argv=argv, env={**base_env(self.name), **env}, workdir=workdir, run_dir=cdir,
                              hostname=self.pod["spec"].get("hostname") or self.name, mounts=mounts,
                              memory_limit=limit, container=name, user=user)
            logfile = self.ctx.logs.new_instance(self.pod_logs, name, count)
            proc = ContainerProcess(spec, logfile, self.ctx.launcher, self.ctx.cgroups, self.ctx.mountpoints,
                                    self._on_exit)
            cid = "process://" + hashlib.sha256(f"{key}-{time.time_ns()}".encode()).hexdigest()
            try:
                proc.start()
            except OSError as exc:
                logfile.close()
                rec.restart_count = count
                rec.container_id = cid
                rec.ever_started = True
                msg = f"failed to start container {name!r}: {exc}"
                rec.terminate(128, "StartError", now, time.time(), message=msg)
                self._after_exit(rec, 0.0)
                self.ctx.events.emit(self.pod, "Warning", "Failed", f"Error: {msg}", name, rec.init)
                self._poke()
                return
            self.procs[name] = proc
            rec.restart_count = count
            rec.extra.pop("retry_delay", None)
            rec.extra.pop("backoff_event_sent", None)
            rec.run(proc.started_at, cid, images.image_id(c.get("image", "")))
            if rec.sidecar:
                self._poke()  # the next init (or the main) containers may start now
        self.ctx.events.emit(self.pod, "Normal", "Created", f"Created container: {name}", name, rec.init)
        self.ctx.events.emit(self.pod, "Normal", "Started", f"Started container {name}", name, rec.init)
        self.write_status()

    def _config_error(self, rec: ContainerRecord, reason: str, message: str) -> None:
        with self.cond:
            rec.wait(reason, message)
            self._retry_later(rec, time.time())
        self.ctx.events.emit(self.pod, "Warning", "Failed", f"Error: {message}", rec.name, rec.init)
        self.write_status()

    # ------------------------------------------------------------ exits
    def _on_exit(self, proc: ContainerProcess, info: ExitInfo) -> None:
        name = proc.spec.container
        with self.cond:
            rec = self.records[name]
            if self.procs.get(name) is proc:
                del self.procs[name]
            message = info.start_error or termination_message(
                self.specs[name], proc.spec.run_dir / "termination-log", info.exit_code, proc.log.path)
            rec.terminate(info.exit_code, info.reason, info.started_at, info.finished_at, info.signal, message)
            self._after_exit(rec, info.finished_at - info.started_at)
            self._poke()
        if info.start_error:
            self.ctx.events.emit(self.pod, "Warning", "Failed", f"Error: {info.start_error}", name, rec.init)
        if not self.ctx.shutting_down:
            self.write_status()

    def _after_exit(self, rec: ContainerRecord, ran_for: float) -> None:
        """Advance the restart back-off: the first restart is immediate, then 10 s, 20 s, ... 300 s."""
        delay = rec.extra.get("next_backoff", 0.0)
        if ran_for > BACKOFF_RESET_AFTER:
            delay = 0.0
        rec.extra["backoff_delay"] = delay
        rec.extra["backoff_until"] = time.time() + delay
        rec.extra["next_backoff"] = self.ctx.backoff_initial if not delay else min(delay * 2, self.ctx.backoff_max)

    # --------------------------------------------------------- termination
    @staticmethod
    def _grace(pod: dict) -> float:
        meta, spec = pod["metadata"], pod["spec"]
        value = meta.get("deletionGracePeriodSeconds")
        if value is None:
            value = spec.get("terminationGracePeriodSeconds", 30)
        return float(value)

    def _stop_all(self, grace: float, why: str) -> None:
        """SIGTERM every container, wait up to ``grace`` (shortened by later updates), then SIGKILL."""
        with self.cond:
            self._stopping = True
            procs = [p for p in self.procs.values() if p.running]
        if not procs:
            return
        for proc in procs:
            name = proc.spec.container
            self.ctx.events.emit(self.pod, "Normal", "Killing", f"Stopping container {name}", name,
                                 self.records[name].init)
            proc.signal(signal.SIGTERM)
        began = time.time()
        with self.cond:
            while any(self.procs.get(p.spec.container) is p for p in procs):  # _on_exit removes them
                pod_grace = self._grace(self.pod) if self.pod["metadata"].get("deletionTimestamp") else grace
                remaining = began + min(grace, pod_grace) - time.time()
                if remaining <= 0:
                    break
                self.cond.wait(remaining)
        for proc in procs:
            if proc.running:
                proc.signal(signal.SIGKILL)
        for proc in procs:
            proc.wait(10.0)
        log.info("stopped containers of %s/%s: %s", self.namespace, self.name, why)

    def _fail_pod(self, reason: str, message: str, grace: float, event: str, disruption: bool = False) -> None:
        self.ctx.events.emit(self.pod, "Warning", event, message)
        with self.cond:
            self.reason, self.message = reason, message
            if disruption:
                self.extra_conditions = [{"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
                                          "message": message, "lastProbeTime": None,
                                          "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]
            self.terminal_phase = "Failed"
        self._stop_all(grace, reason)
        self.write_status()

    def _terminate_and_delete(self) -> bool:
        self._stop_all(self._grace(self.pod), "the pod is being deleted")
        with self.cond:
            if not self.terminal_phase:
                phase = compute_phase(self.pod["spec"].get("restartPolicy") or "Always", self.inits, self.regular,
                                      self._pod_initialized, terminal=True)
                self.terminal_phase = phase if phase in ("Succeeded", "Failed") else "Failed"
        if not self.write_status():
            with self.cond:
                if not self._gone:
                    self._wake(time.time() + 1.0)
                    return False
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": self.uid}}
        try:
            retry(lambda: self.ctx.api.delete(pod_path(self.namespace, self.name), body), what="delete pod")
        except ApiError as exc:
            if exc.status not in (404, 409):
                log.warning("deleting %s/%s: %s", self.namespace, self.name, exc)
                with self.cond:
                    self._wake(time.time() + 1.0)
                return False
        except Exception as exc:  # noqa: BLE001 - retried by the loop
            log.warning("deleting %s/%s: %s", self.namespace, self.name, exc)
            with self.cond:
                self._wake(time.time() + 1.0)
            return False
        return True

    def _cleanup(self) -> None:
        self.volumes.teardown()
        self.ctx.logs.drop(self.uid)
        self.ctx.events.forget(self.uid)
        shutil.rmtree(self.dir, ignore_errors=True)
        self._on_done(self.uid)

    def kill_now(self) -> list[ContainerProcess]:
        """Agent shutdown: SIGTERM every container; return them so the caller can SIGKILL stragglers."""
        with self.cond:
            self._stopping = True
            procs = [p for p in self.procs.values() if p.running]
            self._poke()
        for proc in procs:
            proc.signal(signal.SIGTERM)
        return procs

    # ------------------------------------------------------------- status
    def _log_waiting(self, container: str) -> str | None:
        rec = self.records.get(container)
        return rec.waiting_reason if rec is not None and not rec.ever_started else None

    def _snapshot(self) -> dict[str, Any]:
        """The status to write (latches a terminal phase once reached)."""
        self._pod_initialized = initialized = self._pod_initialized or is_initialized(self.inits)  # stays True once True
        if self.terminal_phase:
            phase = self.terminal_phase
        else:
            phase = compute_phase(self.pod["spec"].get("restartPolicy") or "Always", self.inits, self.regular,
                                  initialized, terminal=False)
            if phase in ("Succeeded", "Failed"):
                self.terminal_phase = phase
                self._poke()
        sandbox = self.volumes_ready and phase not in ("Succeeded", "Failed")
        conds = self.clock.render(conditions(self.inits, self.regular, phase, sandbox, initialized), time.time())
        status = pod_status(phase=phase, conditions=conds + self.extra_conditions, inits=self.inits,
                            regular=self.regular, start_time=self.start_time, reason=self.reason,
                            message=self.message, generation=self.pod["metadata"].get("generation"))
        return status

    def write_status(self) -> bool:
        """Patch pods/status with the current state (no-op if unchanged); False if it could not be written."""
        with self._write_lock:
            with self.cond:
                if self._gone:
                    return False
                status = self._snapshot()
            text = json.dumps(status, sort_keys=True)
            if text == self._last_written:
                return True
            body = {"metadata": {"uid": self.uid}, "status": status}
            try:
                retry(lambda: self.ctx.api.patch(pod_path(self.namespace, self.name, "status"), body),
                      attempts=5, what="status patch")
            except ApiError as exc:
                if exc.status in (404, 409):
                    self.gone()
                    return False
                log.warning("status of %s/%s: %s", self.namespace, self.name, exc)
                with self.cond:
                    self._wake(time.time() + 1.0)
                return False
            except Exception as exc:  # noqa: BLE001 - retried by the loop
                log.warning("status of %s/%s: %s", self.namespace, self.name, exc)
                with self.cond:
                    self._wake(time.time() + 1.0)
                return False
            self._last_written = text
            return True

"""The process node agent (``localcluster.node``): a small kubelet running pods as local processes.

Pure unit tests of its helpers come first; the rest run pods on the session's local
cluster (fixtures ``api_client`` and ``namespace``) and check what a kubelet would do.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from k8s_step_operator.localcluster.kubelet import images
from k8s_step_operator.localcluster.kubelet.envvars import ConfigError, container_env, expand, format_map
from k8s_step_operator.localcluster.kubelet.logs import ContainerLog, LogOptions, read_log
from k8s_step_operator.localcluster.kubelet.timeutil import format_ts, parse_ts
from k8s_step_operator.localcluster.kubelet.mountpoints import MountpointRegistry
from k8s_step_operator.localcluster.kubelet.nodestatus import self_settable
from k8s_step_operator.localcluster.kubelet.quantity import parse_quantity
from k8s_step_operator.localcluster.kubelet.status import ContainerRecord, compute_phase
from k8s_step_operator.localcluster.kubelet.volumes import write_atomic
from k8s_step_operator.localcluster.node import EVICT_ANNOTATION

PY = "python:3.11"


# =========================================================== unit tests (no cluster)
def test_image_references() -> None:
    assert images.normalise("python:3.11") == "docker.io/library/python:3.11"
    assert images.normalise("busybox") == "docker.io/library/busybox:latest"
    assert images.normalise("ghcr.io/zenml-io/zenml:0.98") == "ghcr.io/zenml-io/zenml:0.98"
    assert images.normalise("zenmldocker/zenml") == "docker.io/zenmldocker/zenml:latest"
    for bad in ("Python:3.11", "python 3", "", "python::1"):
        with pytest.raises(images.InvalidImageName):
            images.parse(bad)
    policy = images.ImagePolicy(["python:*", "busybox*", "*/zenml*"])
    assert policy.present("python:3.11") and policy.present("busybox") and policy.present("docker.io/library/python:3")
    assert policy.present("zenmldocker/zenml:0.98")
    assert not policy.present("registry.invalid/nope:1") and not policy.present("ubuntu:22.04")


def test_image_pull_states_and_back_off() -> None:
    from k8s_step_operator.localcluster.kubelet.imagepull import ensure_image

    policy = images.ImagePolicy(["python:*"])
    events: list[tuple[str, str, str]] = []
    rec = ContainerRecord("c", "nope/x:1")

    def pull(image: str, now: float, **container: str) -> tuple[bool, float | None]:
        return ensure_image(rec, {"image": image, **container}, policy, lambda *e: events.append(e), now, 10.0, 300.0)

    assert pull("nope/x:1", 100.0) == (False, 101.0) and rec.waiting_reason == "ErrImagePull"
    assert pull("nope/x:1", 101.0) == (False, 110.0) and rec.waiting_reason == "ImagePullBackOff"
    assert pull("nope/x:1", 110.0) == (False, 111.0) and rec.extra["pull_backoff"] == (130.0, 20.0)
    assert ("Warning", "Failed", "Error: ErrImagePull") in events and ("Normal", "BackOff",
                                                                         'Back-off pulling image "nope/x:1"') in events
    assert pull("python:3.11", 0.0) == (True, None)
    assert pull("nope/x:1", 0.0, imagePullPolicy="Never")[0] is False and rec.waiting_reason == "ErrImageNeverPull"
    assert pull("Python:3.11", 0.0)[0] is False and rec.waiting_reason == "InvalidImageName"


def test_expand_like_kubernetes() -> None:
    env = {"A": "1", "B": "two"}.get
    assert expand("$(A)-$(B)", env) == "1-two"
    assert expand("$$(A) $(MISSING) $(", env) == "$(A) $(MISSING) $("
    assert expand("cost: $5", env) == "cost: $5"


def test_container_env_resolution() -> None:
    class Source:
        def secret(self, ns: str, name: str) -> dict | None:
            return {"data": {"pw": "aHVudGVyMg=="}} if name == "s" else None

        def configmap(self, ns: str, name: str) -> dict | None:
            return {"data": {"mode": "fast", "bad=key": "x"}} if name == "c" else None

    pod = {"metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"app": "a"}},
           "spec": {"nodeName": "local-cpu", "serviceAccountName": "default",
                    "containers": [{"name": "c", "resources": {"limits": {"memory": "1Gi"}}}]}}
    container = {
        "name": "c",
        "envFrom": [{"configMapRef": {"name": "c"}, "prefix": "CM_"}, {"secretRef": {"name": "gone", "optional": True}}],
        "env": [
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "LBL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "BOTH", "value": "$(CM_mode)/$(PW)"},
        ],
    }
    env = container_env(pod, container, Source(), {"cpu": "8", "memory": "32Gi"}, {"KUBERNETES_SERVICE_HOST": "h"})
    assert env["PW"] == "hunter2" and env["LBL"] == "a" and env["MEM"] == "1024" and env["CPU"] == "8"
    assert env["CM_mode"] == "fast" and "CM_bad=key" not in env and env["BOTH"] == "fast/hunter2"
    assert env["KUBERNETES_SERVICE_HOST"] == "h"
    container["env"].append({"name": "X", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k"}}})
    with pytest.raises(ConfigError, match='secret "missing" not found'):
        container_env(pod, container, Source(), {}, {})


def test_quantities_and_label_format() -> None:
    assert parse_quantity("500m") * 1000 == 500 and parse_quantity("1Gi") == 2**30 and parse_quantity("2k") == 2000
    assert format_map({"b": 'say "hi"', "a": "1"}) == 'a="1"\nb="say \\"hi\\""'


def test_log_records_and_options(tmp_path: Path) -> None:
    log = ContainerLog(tmp_path / "0.log")
    for line in (b"one\n", b"two\n", b"partial"):
        log.write("stdout", line)
    log.close()
    text = b"".join(read_log(log, LogOptions()))
    assert text == b"one\ntwo\npartial"
    assert b"".join(read_log(log, LogOptions(tail_lines=2))) == b"two\npartial"
    assert b"".join(read_log(log, LogOptions(limit_bytes=5))) == b"one\nt"
    stamped = b"".join(read_log(log, LogOptions(timestamps=True))).splitlines()[0].decode()
    ts, _, rest = stamped.partition(" ")
    assert rest == "one" and len(ts) == 30 and parse_ts(ts) <= time.time_ns()
    assert b"".join(read_log(log, LogOptions(since_ns=time.time_ns() + 10**9))) == b""
    assert parse_ts(format_ts(1_700_000_000_123_456_789)) == 1_700_000_000_123_456_789
    assert parse_ts("2023-11-14T23:13:20+01:00") == parse_ts("2023-11-14T22:13:20Z")


def test_log_follow_wakes_per_line(tmp_path: Path) -> None:
    log = ContainerLog(tmp_path / "0.log")
    got: list[tuple[float, bytes]] = []

    def follow() -> None:
        for piece in read_log(log, LogOptions(follow=True)):
            if piece:
                got.append((time.monotonic(), piece))

    reader = threading.Thread(target=follow)
    reader.start()
    log.write("stdout", b"first\n")
    time.sleep(0.3)
    assert [p for _, p in got] == [b"first\n"]
    log.write("stderr", b"second\n")
    log.close()
    reader.join(5)
    assert not reader.is_alive() and [p for _, p in got] == [b"first\n", b"second\n"]


def test_phase_rules() -> None:
    def rec(state: str, code: int | None = None, init: bool = False) -> ContainerRecord:
        r = ContainerRecord("c", PY, init=init)
        if state == "running":
            r.run(time.time(), "process://x", "")
        elif state == "terminated":
            r.terminate(code or 0, "Completed" if not code else "Error", time.time(), time.time())
        return r

    assert compute_phase("Never", [], [rec("waiting")], True, False) == "Pending"
    assert compute_phase("Never", [], [rec("running")], True, False) == "Running"
    assert compute_phase("Never", [], [rec("terminated", 0), rec("terminated", 2)], True, False) == "Failed"
    assert compute_phase("OnFailure", [], [rec("terminated", 0)], True, False) == "Succeeded"
    assert compute_phase("OnFailure", [], [rec("terminated", 1)], True, False) == "Running"
    assert compute_phase("Always", [], [rec("terminated", 0)], True, False) == "Running"
    assert compute_phase("Always", [], [rec("terminated", 0)], True, True) == "Succeeded"
    assert compute_phase("Never", [rec("terminated", 1, init=True)], [rec("waiting")], False, False) == "Failed"
    assert compute_phase("Never", [rec("running", init=True)], [rec("waiting")], False, False) == "Pending"


def test_atomic_writer(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    assert write_atomic(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})
    assert (target / "a").read_text() == "1" and (target / "dir" / "b").read_text() == "2"
    assert oct((target / "dir" / "b").stat().st_mode & 0o777) == "0o600"
    assert not write_atomic(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})
    assert write_atomic(target, {"a": (b"3", 0o644)})
    assert (target / "a").read_text() == "3" and not (target / "dir").exists()
    assert len([p for p in target.iterdir() if p.name.startswith("..2")]) == 1


class FakeObjects:
    """Stands in for ApiObjects: config maps, secrets and tokens that expire quickly."""

    def __init__(self) -> None:
        self.configmaps = {"kube-root-ca.crt": {"data": {"ca.crt": "CA"}}}
        self.tokens = 0

    def configmap(self, namespace: str, name: str) -> dict | None:
        return self.configmaps.get(name)

    def secret(self, namespace: str, name: str) -> dict | None:
        return None

    def token(self, pod: dict, audience: str | None, expiration: int) -> tuple[str, float, float]:
        self.tokens += 1
        now = time.time()
        return f"token-{self.tokens}", now, now + 1.0  # refresh due after 0.8 s


def test_volumes_render_refresh_and_fail_like_the_kubelet(tmp_path: Path) -> None:
    from k8s_step_operator.localcluster.kubelet.volumes import PodVolumes, VolumeError

    projected = {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
    ]}
    pod = {"metadata": {"name": "p", "namespace": "n", "uid": "u"},
           "spec": {"containers": [{"name": "c"}], "volumes": [{"name": "api", "projected": projected}]}}
    objects = FakeObjects()
    vols = PodVolumes(pod, tmp_path, objects, {})  # type: ignore[arg-type]
    vols.setup()
    root = vols.paths["api"].path
    assert vols.paths["api"].readonly
    assert [(root / f).read_text() for f in ("token", "ca.crt", "namespace")] == ["token-1", "CA", "n"]
    due = vols.refresh()
    assert (root / "token").read_text() == "token-1" and due - time.time() < 1.0
    time.sleep(max(due - time.time(), 0) + 0.05)
    objects.configmaps["kube-root-ca.crt"] = {"data": {"ca.crt": "CA2"}}
    vols.refresh()
    assert (root / "token").read_text() == "token-2" and (root / "ca.crt").read_text() == "CA2"
    vols.teardown()
    assert not (tmp_path / "volumes").exists()
    pod["spec"]["volumes"] = [{"name": "s", "secret": {"secretName": "nope"}}]
    with pytest.raises(VolumeError, match='MountVolume.SetUp failed for volume "s" : secret "nope" not found'):
        PodVolumes(pod, tmp_path, objects, {}).setup()  # type: ignore[arg-type]


def test_security_context_resolution() -> None:
    from k8s_step_operator.localcluster.kubelet import security

    pod = {"metadata": {"name": "p", "namespace": "n", "uid": "u"}, "spec": {
        "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000], "fsGroup": 2000},
        "containers": [{"name": "a"}, {"name": "b", "securityContext": {"runAsUser": 1001, "runAsGroup": 3001}}]}}
    a, b = pod["spec"]["containers"]
    run_a, run_b = security.run_as(pod, a), security.run_as(pod, b)
    assert run_a is not None and (run_a.uid, run_a.gid) == (1000, 3000) and run_a.groups[0] == 3000
    assert {4000, 2000} <= set(run_a.groups) and len(set(run_a.groups)) == len(run_a.groups)
    assert run_b is not None and (run_b.uid, run_b.gid) == (1001, 3001) and {4000, 2000} <= set(run_b.groups)
    assert security.fs_user(pod) is None and security.fs_group(pod) == 2000  # containers differ: no fsUser
    b["securityContext"] = {"runAsUser": 1000}
    assert security.fs_user(pod) == 1000
    plain = {"metadata": pod["metadata"], "spec": {"containers": [{"name": "c"}]}}
    assert security.run_as(plain, plain["spec"]["containers"][0]) is None  # nothing set: the agent's own user
    only_group = {"metadata": pod["metadata"], "spec": {"containers": [{"name": "c"}], "securityContext": {
        "runAsGroup": 5}}}
    run_c = security.run_as(only_group, {"name": "c"})
    assert run_c is not None and (run_c.uid, run_c.gid, run_c.groups[0]) == (0, 5, 5)  # the image's user: root
    nonroot = {"metadata": pod["metadata"], "spec": {"securityContext": {"runAsNonRoot": True}}}
    assert security.non_root_violation(nonroot, {"name": "c"}) == (
        'container has runAsNonRoot and image will run as root (pod: "p_n(u)", container: c)')
    assert security.non_root_violation(nonroot, {"name": "c", "securityContext": {"runAsUser": 0}}) == (
        'container\'s runAsUser breaks non-root policy (pod: "p_n(u)", container: c)')
    assert security.non_root_violation(nonroot, {"name": "c", "securityContext": {"runAsUser": 7}}) is None
    assert security.non_root_violation(nonroot, {"name": "c", "securityContext": {"runAsNonRoot": False}}) is None


def test_fs_group_and_fs_user_ownership(tmp_path: Path) -> None:
    from k8s_step_operator.localcluster.kubelet.volumes import PodVolumes

    if os.geteuid() != 0:
        pytest.skip("changing ownership needs root")
    projected = {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt", "mode": 0o400}]}},
    ]}
    pod = {"metadata": {"name": "p", "namespace": "n", "uid": "u"},
           "spec": {"securityContext": {"runAsUser": 1234, "fsGroup": 4321}, "containers": [{"name": "c"}],
                    "volumes": [{"name": "api", "projected": projected}, {"name": "scratch", "emptyDir": {}}]}}
    vols = PodVolumes(pod, tmp_path, FakeObjects(), {})  # type: ignore[arg-type]
    vols.setup()
    api, scratch = vols.paths["api"].path, vols.paths["scratch"].path
    token, ca = (api / "token").stat(), (api / "ca.crt").stat()
    assert (token.st_uid, token.st_gid, oct(token.st_mode & 0o7777)) == (1234, 4321, "0o640")
    assert (ca.st_uid, ca.st_gid, oct(ca.st_mode & 0o7777)) == (0, 4321, "0o440")
    assert (scratch.stat().st_gid, oct(scratch.stat().st_mode & 0o7777)) == (4321, "0o2777")
    assert (api / "..data").resolve().stat().st_mode & 0o2000  # setgid: files made later get the group too
    vols.refresh()
    assert (api / "token").stat().st_ino == token.st_ino  # modes match what was written: no needless rewrite
    vols.teardown()


def test_mountpoint_registry_removes_only_when_unused(tmp_path: Path) -> None:
    reg = MountpointRegistry(tmp_path / "reg")
    base = tmp_path / "host"
    base.mkdir()
    a = reg.acquire(str(base / "x" / "y"), f"{os.getpid()}:a", is_file=False)
    b = reg.acquire(str(base / "x" / "z"), f"{os.getpid()}:b", is_file=False)
    reg.release(a, f"{os.getpid()}:a")
    assert not (base / "x" / "y").exists() and (base / "x" / "z").is_dir()
    reg.release(b, f"{os.getpid()}:b")
    assert not (base / "x").exists() and base.is_dir()
    (base / "keep").mkdir()
    k = reg.acquire(str(base / "keep"), f"{os.getpid()}:k", is_file=False)
    reg.release(k, f"{os.getpid()}:k")
    assert (base / "keep").is_dir()  # existed before: never removed
    reg.acquire(str(base / "dead" / "mp"), "999999999:gone", is_file=False)  # a holder whose process is gone
    reg.sweep()
    assert not (base / "dead").exists()


def test_node_restriction_labels() -> None:
    assert self_settable("gpu-type") and self_settable("cloud.google.com/gke-nodepool")
    assert self_settable("kubernetes.io/hostname") and self_settable("node.kubernetes.io/instance-type")
    assert not self_settable("node-role.kubernetes.io/gpu") and not self_settable("x.node-restriction.kubernetes.io/a")


# =========================================================== cluster tests
@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


def _pod(name: str, command: list[str] | None, **spec: Any) -> dict:
    container: dict[str, Any] = {"name": "main", "image": PY}
    if command is not None:
        container["command"] = command
    container.update(spec.pop("container", {}))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 5, "containers": [container], **spec}}


def _py(code: str) -> list[str]:
    return ["python", "-c", code]


def create(core: client.CoreV1Api, namespace: str, body: dict) -> None:
    """Create a pod; retry while the namespace's default ServiceAccount does not exist yet."""
    deadline = time.monotonic() + 15
    while True:
        try:
            core.create_namespaced_pod(namespace, body)
            return
        except ApiException as exc:
            if exc.status != 403 or "serviceaccount" not in str(exc.body) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def wait_pod(core: client.CoreV1Api, namespace: str, name: str, check: Callable[[Any], Any],
             timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    pod = None
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, namespace)
        if check(pod):
            return pod
        time.sleep(0.05)
    raise AssertionError(f"timed out; last status: {pod.status if pod else None}")


def done(pod: Any) -> bool:
    return pod.status.phase in ("Succeeded", "Failed")


def logs(core: client.CoreV1Api, namespace: str, name: str, **kw: Any) -> str:
    # The generated client turns text/plain into "b'...'" for str responses; read the raw body.
    resp = core.read_namespaced_pod_log(name, namespace, _preload_content=False, **kw)
    return resp.data.decode()


def waiting(pod: Any, index: int = 0) -> Any:
    statuses = pod.status.container_statuses or []
    return statuses[index].state.waiting if statuses else None


def test_pod_succeeds_with_logs(core: client.CoreV1Api, namespace: str) -> None:
    create(core, namespace, _pod("ok", _py("import os; print('hello from', os.environ['HOSTNAME']); print('bye')")))
    pod = wait_pod(core, namespace, "ok", done)
    assert pod.status.phase == "Succeeded"
    term = pod.status.container_statuses[0].state.terminated
    assert term.exit_code == 0 and term.reason == "Completed" and term.finished_at is not None
    assert pod.status.pod_ip == "127.0.0.1" and pod.status.host_ip == "127.0.0.1" and pod.spec.node_name
    conds = {c.type: c for c in pod.status.conditions}
    assert conds["Initialized"].status == "True" and conds["Ready"].reason == "PodCompleted"
    assert logs(core, namespace, "ok") == "hello from ok\nbye\n"
    stamped = logs(core, namespace, "ok", timestamps=True, tail_lines=1)
    assert stamped.endswith("Z bye\n") and len(stamped.split(" ")[0]) == 30
    deadline = time.monotonic() + 5
    while True:  # events are sent in the background
        events = {(e.reason, e.source.component) for e in core.list_namespaced_event(namespace).items}
        if {("Pulled", "kubelet"), ("Created", "kubelet"), ("Started", "kubelet")} <= events:
            break
        assert time.monotonic() < deadline, events
        time.sleep(0.1)


def test_app_dir_is_private_to_each_container(core: client.CoreV1Api, namespace: str) -> None:
    """/app (ZenML images' WORKDIR, where its entrypoint unpacks code) is per container, as in an image."""
    marker = f"only-mine-{uuid.uuid4().hex[:8]}"
    code = f"import os; open('/app/{marker}', 'w').write('x'); print(sorted(os.listdir('/app')))"
    create(core, namespace, _pod("app-a", _py(code)))
    create(core, namespace, _pod("app-b", _py(code)))
    for name in ("app-a", "app-b"):
        assert wait_pod(core, namespace, name, done).status.phase == "Succeeded"
        assert logs(core, namespace, name) == f"['{marker}']\n"  # the other pod's file is not visible
    assert not os.path.exists(f"/app/{marker}")  # nothing reached the host's /app


def test_pod_fails_with_exit_code(core: client.CoreV1Api, namespace: str) -> None:
    create(core, namespace, _pod("bad", _py("import sys; print('oops', file=sys.stderr); sys.exit(3)")))
    pod = wait_pod(core, namespace, "bad", done)
    term = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Failed" and term.exit_code == 3 and term.reason == "Error"
    assert logs(core, namespace, "bad") == "oops\n"


def test_restart_on_failure_then_success(core: client.CoreV1Api, namespace: str) -> None:
    code = ("import os, sys; p = '/work/marker'; first = not os.path.exists(p); open(p, 'a').close(); "
            "print('first' if first else 'second'); sys.exit(1 if first else 0)")
    body = _pod("retry", _py(code), restartPolicy="OnFailure", volumes=[{"name": "w", "emptyDir": {}}],
                container={"volumeMounts": [{"name": "w", "mountPath": "/work"}]})
    create(core, namespace, body)
    pod = wait_pod(core, namespace, "retry", done)
    status = pod.status.container_statuses[0]
    assert pod.status.phase == "Succeeded" and status.restart_count == 1
    assert status.last_state.terminated.exit_code == 1
    assert logs(core, namespace, "retry") == "second\n" and logs(core, namespace, "retry", previous=True) == "first\n"


def test_gpu_pod_needs_toleration(core: client.CoreV1Api, namespace: str) -> None:
    gpu = {"resources": {"limits": {"nvidia.com/gpu": "1"}}}
    create(core, namespace, _pod("no-tol", _py("print(1)"), container=gpu))
    toleration = [{"key": "gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}]
    create(core, namespace, _pod("tol", _py("import os; print(os.environ['NODE'])"), tolerations=toleration,
                                 container={**gpu, "env": [{"name": "NODE", "valueFrom": {
                                     "fieldRef": {"fieldPath": "spec.nodeName"}}}]}))
    pod = wait_pod(core, namespace, "tol", done)
    assert pod.spec.node_name == "local-gpu" and pod.status.phase == "Succeeded"
    assert logs(core, namespace, "tol") == "local-gpu\n"
    pod = wait_pod(core, namespace, "no-tol", lambda p: any(
        c.type == "PodScheduled" and c.status == "False" for c in p.status.conditions or []))
    cond = next(c for c in pod.status.conditions if c.type == "PodScheduled")
    assert cond.reason == "Unschedulable" and pod.status.phase == "Pending" and not pod.spec.node_name


def test_env_from_secret_configmap_and_downward_api(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_secret(namespace, {"metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {"level": "debug", "n": "7"}})
    env = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "level"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "COMBINED", "value": "$(LEVEL)-$(POD)"},
    ]
    body = _pod("env", _py("import json, os; print(json.dumps(dict(os.environ)))"),
                container={"env": env, "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
                           "resources": {"limits": {"memory": "256Mi"}}})
    body["metadata"]["labels"] = {"team": "ml"}
    create(core, namespace, body)
    pod = wait_pod(core, namespace, "env", done)
    assert pod.status.phase == "Succeeded"
    seen = json.loads(logs(core, namespace, "env"))
    assert seen["TOKEN"] == "s3cret" and seen["LEVEL"] == "debug" and seen["POD"] == "env" and seen["NS"] == namespace
    assert seen["UID"] == pod.metadata.uid and seen["TEAM"] == "ml" and seen["IP"] == "127.0.0.1"
    assert seen["MEM"] == "256" and seen["COMBINED"] == "debug-env" and seen["CFG_n"] == "7"
    host = core.api_client.configuration.host
    assert f"https://{seen['KUBERNETES_SERVICE_HOST']}:{seen['KUBERNETES_SERVICE_PORT']}" == host
    assert os.path.exists(os.path.join(seen["PATH"].split(":")[0], "python"))  # this machine's Python first


def test_missing_secret_blocks_until_created(core: client.CoreV1Api, namespace: str) -> None:
    env = [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "late", "key": "pw"}}}]
    create(core, namespace, _pod("late", _py("import os; print(os.environ['PW'])"), container={"env": env}))
    pod = wait_pod(core, namespace, "late", lambda p: waiting(p) and waiting(p).reason == "CreateContainerConfigError")
    assert waiting(pod).message == 'secret "late" not found' and pod.status.phase == "Pending"
    core.create_namespaced_secret(namespace, {"metadata": {"name": "late"}, "stringData": {"pw": "finally"}})
    pod = wait_pod(core, namespace, "late", done)
    assert pod.status.phase == "Succeeded" and logs(core, namespace, "late") == "finally\n"


def test_init_container_shares_empty_dir(core: client.CoreV1Api, namespace: str) -> None:
    mount_root = f"/k8sso-test-{uuid.uuid4().hex[:8]}"
    mounts = [{"name": "shared", "mountPath": f"{mount_root}/shared"}]
    init = {"name": "prepare", "image": PY, "volumeMounts": mounts,
            "command": _py(f"import time; open('{mount_root}/shared/data', 'w').write(str(time.time()))")}
    code = (f"import time; t = float(open('{mount_root}/shared/data').read()); "
            "print('init ran first' if t <= time.time() else 'clock?')")
    body = _pod("init", _py(code), initContainers=[init], volumes=[{"name": "shared", "emptyDir": {}}],
                container={"volumeMounts": mounts})
    create(core, namespace, body)
    pod = wait_pod(core, namespace, "init", done)
    assert pod.status.phase == "Succeeded", pod.status
    init_status = pod.status.init_container_statuses[0]
    main_status = pod.status.container_statuses[0]
    assert init_status.state.terminated.exit_code == 0
    assert init_status.state.terminated.finished_at <= main_status.state.terminated.started_at
    assert logs(core, namespace, "init") == "init ran first\n"
    assert not os.path.exists(mount_root)  # mountpoints created on the host are removed again


def test_configmap_volume_and_memory_shm(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "files"},
                                                  "data": {"app.yaml": "x: 1\n", "other": "ignored"}})
    code = (
        "import json, os\n"
        "mounts = {l.split()[1]: l.split()[2:4] for l in open('/proc/self/mounts')}\n"
        "out = {'yaml': open('/etc/k8sso-test/config/settings.yaml').read(),\n"
        "       'mode': oct(os.stat('/etc/k8sso-test/config/settings.yaml').st_mode & 0o777),\n"
        "       'listing': sorted(p for p in os.listdir('/etc/k8sso-test/config') if not p.startswith('..')),\n"
        "       'shm': mounts.get('/dev/shm')}\n"
        "try:\n    open('/etc/k8sso-test/config/new', 'w')\nexcept OSError as e:\n    out['ro'] = e.errno\n"
        "open('/dev/shm/x', 'w').write('in memory')\n"
        "print(json.dumps(out))\n"
    )
    body = _pod("cm", _py(code), volumes=[
        {"name": "config", "configMap": {"name": "files", "items": [{"key": "app.yaml", "path": "settings.yaml"}],
                                          "defaultMode": 0o640}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ], container={"volumeMounts": [{"name": "config", "mountPath": "/etc/k8sso-test/config"},
                                   {"name": "shm", "mountPath": "/dev/shm"}]})
    create(core, namespace, body)
    pod = wait_pod(core, namespace, "cm", done)
    out = json.loads(logs(core, namespace, "cm"))
    assert pod.status.phase == "Succeeded", out
    assert out["yaml"] == "x: 1\n" and out["mode"] == "0o640" and out["listing"] == ["settings.yaml"]
    assert out["ro"] == 30  # EROFS: configMap volumes are read-only
    assert out["shm"][0] == "tmpfs"
    assert not os.path.exists("/dev/shm/x")  # the pod's /dev/shm was its own
    assert not os.path.exists("/etc/k8sso-test")


def test_persistent_volume_claim(core: client.CoreV1Api, namespace: str, tmp_path: Path) -> None:
    pv_name = f"pv-{namespace}"[:63]
    host_dir = tmp_path / "pv"
    host_dir.mkdir()
    # Claim first, then a PV pre-bound to its uid: the PV controller binds at once (a claim naming
    # its volume would wait for the controller's 15 s resync).
    claim = core.create_namespaced_persistent_volume_claim(namespace, {"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "storageClassName": "", "resources": {"requests": {"storage": "1Gi"}}}})
    core.create_persistent_volume({"metadata": {"name": pv_name}, "spec": {
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
        "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(host_dir)},
        "claimRef": {"namespace": namespace, "name": "data", "uid": claim.metadata.uid}}})
    try:
        body = _pod("pvc", _py("open('/data/out/result.txt', 'w').write('persisted')"),
                    volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
                    container={"volumeMounts": [{"name": "d", "mountPath": "/data/out"}]})
        create(core, namespace, body)
        pod = wait_pod(core, namespace, "pvc", done, timeout=30)
        assert pod.status.phase == "Succeeded"
        assert (host_dir / "result.txt").read_text() == "persisted"
        assert not os.path.exists("/data/out")
    finally:
        core.delete_persistent_volume(pv_name)


def test_service_account_token_works(core: client.CoreV1Api, namespace: str) -> None:
    code = (
        "import json\n"
        "from kubernetes import client, config\n"
        "config.load_incluster_config()\n"
        "review = client.AuthenticationV1Api().create_self_subject_review({})\n"
        "d = '/var/run/secrets/kubernetes.io/serviceaccount/'\n"
        "print(json.dumps({'user': review.status.user_info.username, 'ns': open(d + 'namespace').read(),\n"
        "                  'ca': open(d + 'ca.crt').read()[:27]}))\n"
    )
    create(core, namespace, _pod("sa", _py(code)))
    pod = wait_pod(core, namespace, "sa", done, timeout=30)
    out = logs(core, namespace, "sa")
    assert pod.status.phase == "Succeeded", out
    seen = json.loads(out)
    assert seen == {"user": f"system:serviceaccount:{namespace}:default", "ns": namespace,
                    "ca": "-----BEGIN CERTIFICATE-----"}


def _pids_with(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _wait_pids(marker: str) -> list[int]:
    deadline = time.monotonic() + 5
    while not _pids_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = _pids_with(marker)
    assert pids, "the container process is not visible on the host"
    return pids


def test_delete_running_pod_kills_process(core: client.CoreV1Api, namespace: str) -> None:
    marker = f"k8sso-marker-{uuid.uuid4().hex}"
    create(core, namespace, _pod("victim", _py(f"import time; print('{marker}', flush=True); time.sleep(600)"),
                                 terminationGracePeriodSeconds=30))
    wait_pod(core, namespace, "victim", lambda p: p.status.phase == "Running")
    pids = _wait_pids(marker)
    started = time.monotonic()
    core.delete_namespaced_pod("victim", namespace)
    while time.monotonic() - started < 10:
        try:
            core.read_namespaced_pod("victim", namespace)
        except ApiException as exc:
            assert exc.status == 404
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the pod was not removed")
    assert time.monotonic() - started < 5  # SIGTERM reached the process; no 30 s grace wait
    assert not [p for p in pids if Path(f"/proc/{p}").exists()]


def _last_states_until_deleted(core: client.CoreV1Api, namespace: str, name: str, timeout: float) -> list[Any]:
    """Every version of the pod seen by a watch until it is deleted."""
    seen = []
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_pod, namespace, field_selector=f"metadata.name={name}",
                          timeout_seconds=int(timeout)):
        seen.append(event["object"])
        if event["type"] == "DELETED":
            w.stop()
            return seen
    raise AssertionError(f"pod {name} not deleted within {timeout}s")


def test_delete_kills_after_grace_when_sigterm_is_ignored(core: client.CoreV1Api, namespace: str) -> None:
    marker = f"k8sso-stubborn-{uuid.uuid4().hex}"
    create(core, namespace, _pod("stubborn", ["sh", "-c", f"trap '' TERM; sleep 600; echo {marker}"],
                                 terminationGracePeriodSeconds=1))
    wait_pod(core, namespace, "stubborn", lambda p: p.status.phase == "Running")
    pids = _wait_pids(marker)
    started = time.monotonic()
    core.delete_namespaced_pod("stubborn", namespace)
    versions = _last_states_until_deleted(core, namespace, "stubborn", timeout=15)
    assert time.monotonic() - started >= 0.9  # the grace period was honoured before SIGKILL
    final = versions[-1]
    assert final.status.phase == "Failed"
    assert final.status.container_statuses[0].state.terminated.exit_code == 137
    assert not [p for p in pids if Path(f"/proc/{p}").exists()]


def test_unknown_image_backs_off(core: client.CoreV1Api, namespace: str) -> None:
    body = _pod("img", _py("print(1)"), container={"image": "registry.invalid/team/nope:1.0"})
    create(core, namespace, body)
    pull_reasons = ("ErrImagePull", "ImagePullBackOff")
    pod = wait_pod(core, namespace, "img", lambda p: waiting(p) and waiting(p).reason in pull_reasons)
    assert "pull access denied" in waiting(pod).message and pod.status.phase == "Pending"
    pod = wait_pod(core, namespace, "img", lambda p: waiting(p) and waiting(p).reason == "ImagePullBackOff")
    assert 'Back-off pulling image "registry.invalid/team/nope:1.0"' in waiting(pod).message
    messages = {e.message for e in core.list_namespaced_event(namespace, field_selector="involvedObject.name=img").items}
    assert "Error: ErrImagePull" in messages and "Error: ImagePullBackOff" in messages
    create(core, namespace, _pod("badname", _py("print(1)"), container={"image": "Not/Valid:Image"}))
    pod = wait_pod(core, namespace, "badname", lambda p: waiting(p) and waiting(p).reason == "InvalidImageName")
    assert "invalid reference format" in waiting(pod).message


def test_active_deadline_exceeded(core: client.CoreV1Api, namespace: str) -> None:
    create(core, namespace, _pod("slow", _py("import time; time.sleep(600)"), activeDeadlineSeconds=2))
    pod = wait_pod(core, namespace, "slow", done, timeout=15)
    assert pod.status.phase == "Failed" and pod.status.reason == "DeadlineExceeded"
    assert pod.status.container_statuses[0].state.terminated is not None


def test_eviction_hook(core: client.CoreV1Api, namespace: str) -> None:
    create(core, namespace, _pod("evictme", _py("import time; time.sleep(600)")))
    wait_pod(core, namespace, "evictme", lambda p: p.status.phase == "Running")
    message = "The node was low on resource: memory. (test)"
    core.patch_namespaced_pod("evictme", namespace, {"metadata": {"annotations": {EVICT_ANNOTATION: message}}})
    pod = wait_pod(core, namespace, "evictme", done)
    assert (pod.status.phase, pod.status.reason, pod.status.message) == ("Failed", "Evicted", message)
    assert pod.status.container_statuses[0].state.terminated.exit_code == 137
    assert any(c.type == "DisruptionTarget" and c.status == "True" for c in pod.status.conditions)


def test_oom_killed_with_memory_limit(core: client.CoreV1Api, namespace: str) -> None:
    if not os.access("/sys/fs/cgroup/memory", os.W_OK) and not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        pytest.skip("no writable memory cgroup on this machine: limits are not enforced")
    body = _pod("oom", _py("x = bytearray(400 * 2**20); print('survived')"),
                container={"resources": {"limits": {"memory": "64Mi"}}})
    create(core, namespace, body)
    pod = wait_pod(core, namespace, "oom", done)
    term = pod.status.container_statuses[0].state.terminated
    assert (pod.status.phase, term.reason, term.exit_code) == ("Failed", "OOMKilled", 137)


def test_log_follow_streams_lines(core: client.CoreV1Api, namespace: str) -> None:
    gate = Path(f"/tmp/k8sso-follow-gate-{uuid.uuid4().hex}")  # the host filesystem is shared with pods
    code = (f"import os, time\nprint('line 0', flush=True)\nwhile not os.path.exists('{gate}'):\n    time.sleep(0.02)\n"
            "for i in (1, 2, 3):\n    print('line', i, flush=True)\n    time.sleep(0.1)\n")
    create(core, namespace, _pod("chatty", _py(code)))
    wait_pod(core, namespace, "chatty", lambda p: p.status.phase != "Pending")
    resp = core.read_namespaced_pod_log("chatty", namespace, follow=True, _preload_content=False)
    lines: list[bytes] = []
    buffer = b""
    try:
        for chunk in resp.stream(amt=1024, decode_content=False):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                lines.append(line)
                if line == b"line 0":  # arrived while the container is still blocked on the gate
                    assert core.read_namespaced_pod("chatty", namespace).status.phase == "Running"
                    gate.touch()
    finally:
        gate.unlink(missing_ok=True)
    assert lines == [f"line {i}".encode() for i in range(4)]  # and the stream ended with the container
    assert done(wait_pod(core, namespace, "chatty", done))


_WHO_AM_I = (
    "import json, os\n"
    "def grp(p):\n    return os.stat(p).st_gid\n"
    "open('/data/by-' + os.environ['NAME'], 'w').write('x')\n"
    "open('/app/mine', 'w').write('x')\n"
    "token = '/var/run/secrets/kubernetes.io/serviceaccount/token'\n"
    "print(json.dumps({'uid': os.getuid(), 'euid': os.geteuid(), 'gid': os.getgid(), 'groups': os.getgroups(),\n"
    "                  'data_gid': grp('/data/by-' + os.environ['NAME']), 'token': len(open(token).read()) > 0,\n"
    "                  'home': os.environ['HOME']}))\n"
)


def test_run_as_user_group_and_groups_container_overrides_pod(core: client.CoreV1Api, namespace: str) -> None:
    """runAsUser/runAsGroup/supplementalGroups/fsGroup as the command sees them; the container's fields win."""
    mounts = [{"name": "data", "mountPath": "/data"}]
    env = [{"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    body = _pod("who", _py(_WHO_AM_I), volumes=[{"name": "data", "emptyDir": {}}],
                securityContext={"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000],
                                 "fsGroup": 2000},
                container={"volumeMounts": mounts, "env": env})
    second = {**body["spec"]["containers"][0], "name": "other",
              "securityContext": {"runAsUser": 1001, "runAsGroup": 3001}}
    second["env"] = [{"name": "NAME", "value": "other"}]
    body["spec"]["containers"].append(second)
    create(core, namespace, body)
    pod = wait_pod(core, namespace, "who", done, timeout=30)
    main, other = (json.loads(logs(core, namespace, "who", container=c)) for c in ("main", "other"))
    assert pod.status.phase == "Succeeded", (main, other)
    assert (main["uid"], main["euid"], main["gid"]) == (1000, 1000, 3000)
    assert (other["uid"], other["gid"]) == (1001, 3001)
    for seen in (main, other):
        assert {4000, 2000} <= set(seen["groups"]) and seen["gid"] in seen["groups"]
        assert seen["data_gid"] == 2000  # fsGroup: the emptyDir is setgid to it
        assert seen["token"]  # the token is group-readable through fsGroup
    assert main["home"] != "/root"


def test_non_root_user_reaches_its_files(core: client.CoreV1Api, namespace: str) -> None:
    """runAsUser alone: emptyDir, /app, default working dir, token (fsUser) and termination log are usable."""
    code = ("import json, os\n"
            "open('/scratch/f', 'w').write('x'); open('/app/f', 'w').write('x'); open('here', 'w').write('x')\n"
            "t = os.stat('/var/run/secrets/kubernetes.io/serviceaccount/token')\n"
            "open('/dev/termination-log', 'w').write('done as %d' % os.getuid())\n"
            "print(json.dumps({'uid': os.getuid(), 'token': [t.st_uid, oct(t.st_mode & 0o777)]}))\n")
    body = _pod("alone", _py(code), volumes=[{"name": "scratch", "emptyDir": {}}],
                securityContext={"runAsUser": 1000, "runAsNonRoot": True},
                container={"volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]})
    create(core, namespace, body)
    pod = wait_pod(core, namespace, "alone", done, timeout=30)
    out = logs(core, namespace, "alone")
    assert pod.status.phase == "Succeeded", (out, pod.status.container_statuses[0].state)
    assert json.loads(out) == {"uid": 1000, "token": [1000, "0o600"]}  # the kubelet's fsUser token
    assert pod.status.container_statuses[0].state.terminated.message == "done as 1000"


def test_run_as_non_root_refuses_root(core: client.CoreV1Api, namespace: str) -> None:
    create(core, namespace, _pod("image-root", _py("print(1)"), securityContext={"runAsNonRoot": True}))
    create(core, namespace, _pod("uid-zero", _py("print(1)"), securityContext={"runAsNonRoot": True},
                                 container={"securityContext": {"runAsUser": 0}}))
    for name, why in (("image-root", "container has runAsNonRoot and image will run as root"),
                      ("uid-zero", "container's runAsUser breaks non-root policy")):
        pod = wait_pod(core, namespace, name, lambda p: waiting(p) and waiting(p).reason == "CreateContainerConfigError")
        assert waiting(pod).message == f'{why} (pod: "{name}_{namespace}({pod.metadata.uid})", container: main)'
        assert pod.status.phase == "Pending" and not pod.status.container_statuses[0].started

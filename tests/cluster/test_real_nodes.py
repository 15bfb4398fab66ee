"""Pods on the local cluster's real nodes: the upstream kubelet on containerd, runc and CNI.

What the stand-in node agent's tests checked about Kubernetes behaviour, now decided by the real
kubelet: exit codes and phases, logs (follow, timestamps, previous), env/envFrom/valueFrom, volumes,
the projected service-account token and in-cluster access, init containers, deadlines, eviction,
OOMKilled, runAsUser/fsGroup, grace periods, image pulls from the local registry; plus what only
real nodes give: pod IPs on per-node bridges, cluster DNS, and no route off the machine.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from k8sso_localcluster.images import current, ref
from k8sso_localcluster.nodes import processes_mentioning
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

PY = current("step")
BUSYBOX = current("busybox")
POD_NETWORK = ipaddress.ip_network("198.18.0.0/15")


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
             timeout: float = 90.0) -> Any:
    """Poll until ``check(pod)``; the first pod of an image on a node includes its pull (~0.5 GB)."""
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
    assert ipaddress.ip_address(pod.status.pod_ip) in POD_NETWORK and pod.spec.node_name
    node = core.read_node(pod.spec.node_name)
    assert pod.status.host_ip == next(a.address for a in node.status.addresses if a.type == "InternalIP")
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
    assert not os.path.exists(f"/app/{marker}")  # nothing reached the host


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
    assert logs(core, namespace, "retry") == "second\n"  # the restarted container's own log


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
    assert seen["UID"] == pod.metadata.uid and seen["TEAM"] == "ml" and seen["IP"] == pod.status.pod_ip
    assert seen["MEM"] == "256" and seen["COMBINED"] == "debug-env" and seen["CFG_n"] == "7"
    service = core.read_namespaced_service("kubernetes", "default")
    assert (seen["KUBERNETES_SERVICE_HOST"], seen["KUBERNETES_SERVICE_PORT"]) == (service.spec.cluster_ip, "443")
    assert seen["PATH"].split(":")[0] == "/opt/venv/bin" and seen["HOSTNAME"] == "env"  # the image's, not ours


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
    assert not os.path.exists(mount_root)  # the mount was inside the containers, not on the host


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


def _wait_pids(marker: str) -> list[int]:
    deadline = time.monotonic() + 5
    while not processes_mentioning(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = processes_mentioning(marker)
    assert pids, "the container process is not visible on the host"
    return pids


def test_delete_running_pod_kills_process(core: client.CoreV1Api, namespace: str) -> None:
    marker = f"k8sso-marker-{uuid.uuid4().hex}"
    # PID 1 of a container ignores SIGTERM unless it handles it; this one does.
    code = (f"import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); "
            f"print('{marker}', flush=True); time.sleep(600)")
    create(core, namespace, _pod("victim", _py(code), terminationGracePeriodSeconds=30))
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
    """A tag the local registry does not have: a real pull answered 404, then the kubelet's back-off."""
    image = ref("step", "no-such-tag")
    create(core, namespace, _pod("img", _py("print(1)"), container={"image": image}))
    pull_reasons = ("ErrImagePull", "ImagePullBackOff")
    pod = wait_pod(core, namespace, "img", lambda p: waiting(p) and waiting(p).reason in pull_reasons)
    assert f"{image}: not found" in waiting(pod).message and pod.status.phase == "Pending"
    pod = wait_pod(core, namespace, "img", lambda p: waiting(p) and waiting(p).reason == "ImagePullBackOff")
    assert f'Back-off pulling image "{image}"' in waiting(pod).message
    messages = {e.message for e in core.list_namespaced_event(namespace, field_selector="involvedObject.name=img").items}
    assert "Error: ErrImagePull" in messages and "Error: ImagePullBackOff" in messages
    bad = "registry.k8sso.local/Not/Valid:Image"
    create(core, namespace, _pod("badname", _py("print(1)"), container={"image": bad}))
    pod = wait_pod(core, namespace, "badname", lambda p: waiting(p) and waiting(p).reason == "InvalidImageName")
    assert "invalid reference format" in waiting(pod).message


def test_images_from_elsewhere_are_refused_at_admission(core: client.CoreV1Api, namespace: str) -> None:
    """The local cluster has no route to other registries; its admission policy says so at once."""
    with pytest.raises(ApiException) as refused:
        create(core, namespace, _pod("far", _py("print(1)"), container={"image": "docker.io/library/python:3.11"}))
    assert refused.value.status == 422 and "registry.k8sso.local/" in refused.value.body


def test_active_deadline_exceeded(core: client.CoreV1Api, namespace: str) -> None:
    create(core, namespace, _pod("slow", _py("import time; time.sleep(600)"), activeDeadlineSeconds=2))
    pod = wait_pod(core, namespace, "slow", done, timeout=15)
    assert pod.status.phase == "Failed" and pod.status.reason == "DeadlineExceeded"
    assert pod.status.container_statuses[0].state.terminated is not None


def test_eviction_by_the_kubelet_for_ephemeral_storage(core: client.CoreV1Api, namespace: str) -> None:
    """The kubelet's eviction manager: a pod over its ephemeral-storage limit is Evicted."""
    code = "import time; open('/tmp/fill', 'wb').write(b'x' * 8 * 2**20); time.sleep(600)"
    create(core, namespace, _pod("evictme", _py(code), container={"resources": {"limits": {"ephemeral-storage": "1Mi"}}}))
    pod = wait_pod(core, namespace, "evictme", done, timeout=180)
    assert (pod.status.phase, pod.status.reason) == ("Failed", "Evicted"), pod.status
    assert "ephemeral local storage usage exceeds the total limit of containers 1Mi" in pod.status.message


def test_oom_killed_with_memory_limit(core: client.CoreV1Api, namespace: str) -> None:
    body = _pod("oom", _py("x = bytearray(400 * 2**20); print('survived')"),
                container={"resources": {"limits": {"memory": "64Mi"}}})
    create(core, namespace, body)
    pod = wait_pod(core, namespace, "oom", done)
    term = pod.status.container_statuses[0].state.terminated
    assert (pod.status.phase, term.reason, term.exit_code) == ("Failed", "OOMKilled", 137)


def test_log_follow_streams_lines(core: client.CoreV1Api, namespace: str, tmp_path: Path) -> None:
    gate = tmp_path / "gate"  # the pod sees tmp_path through a hostPath volume
    code = ("import os, time\nprint('line 0', flush=True)\nwhile not os.path.exists('/gate/gate'):\n    time.sleep(0.02)\n"
            "for i in (1, 2, 3):\n    print('line', i, flush=True)\n    time.sleep(0.1)\n")
    create(core, namespace, _pod("chatty", _py(code), volumes=[{"name": "g", "hostPath": {"path": str(tmp_path)}}],
                                 container={"volumeMounts": [{"name": "g", "mountPath": "/gate"}]}))
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
    "open('/app/mine-' + os.environ['NAME'], 'w').write('x')  # the step image's WORKDIR is writable by any uid\n"
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


# ------------------------------------------------------------ only real nodes
GPU_TOLERATION = [{"key": "gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}]


def _on(node: str) -> dict[str, Any]:
    """Spec fields that put a pod on ``node`` (the GPU node needs its taint tolerated)."""
    return {"nodeSelector": {"kubernetes.io/hostname": node}, "tolerations": GPU_TOLERATION}


def test_dns_headless_service_pod_hostname_and_tcp_across_nodes(core: client.CoreV1Api, namespace: str) -> None:
    """CoreDNS answers for a Service, a headless Service and a pod's hostname under its subdomain;
    a pod on one node reaches a pod on the other over TCP by that name."""
    core.create_namespaced_service(namespace, {"metadata": {"name": "rdv"}, "spec": {
        "clusterIP": "None", "selector": {"app": "rdv"}, "ports": [{"name": "tcp", "port": 8080}]}})
    core.create_namespaced_service(namespace, {"metadata": {"name": "plain"}, "spec": {
        "selector": {"app": "rdv"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    server = _pod("server", ["sh", "-c", "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && "
                                         "exec httpd -f -p 8080 -h /www"],
                  hostname="server", subdomain="rdv", **_on("local-cpu"))
    server["metadata"]["labels"] = {"app": "rdv"}
    server["spec"]["containers"][0]["image"] = BUSYBOX
    create(core, namespace, server)
    wait_pod(core, namespace, "server", lambda p: p.status.phase == "Running")
    fqdn = f"server.rdv.{namespace}.svc.cluster.local"
    script = (f"until nslookup {fqdn} >/dev/null 2>&1; do sleep 0.2; done; "
              f"nslookup {fqdn}; nslookup plain.{namespace}.svc.cluster.local; "
              f"wget -qO- http://server.rdv:8080/; nslookup example.com >/dev/null 2>&1 || echo no-name-out; "
              "ip route | sed 's/^/route: /'")
    clientpod = _pod("client", ["sh", "-c", script], **_on("local-gpu"))
    clientpod["spec"]["containers"][0]["image"] = BUSYBOX
    create(core, namespace, clientpod)
    pod = wait_pod(core, namespace, "client", done)
    out = logs(core, namespace, "client")
    server_pod = core.read_namespaced_pod("server", namespace)
    plain_ip = core.read_namespaced_service("plain", namespace).spec.cluster_ip
    assert pod.status.phase == "Succeeded", out
    assert pod.spec.node_name == "local-gpu" and server_pod.spec.node_name == "local-cpu"
    assert f"Address: {server_pod.status.pod_ip}" in out  # the headless name is the pod's own IP
    assert f"Address: {plain_ip}" in out  # a plain Service's name is its ClusterIP
    assert "hello-from-server" in out  # TCP from a pod on local-gpu to a pod on local-cpu
    assert "no-name-out" in out  # CoreDNS forwards nothing: names outside the cluster do not resolve
    routes = [line.removeprefix("route: ") for line in out.splitlines() if line.startswith("route: ")]
    assert routes and not any(r.startswith("default") for r in routes), routes  # no route off the machine
    assert any(r.startswith("198.18.0.0/15 via ") for r in routes), routes


def test_each_node_has_its_own_containerd(core: client.CoreV1Api, namespace: str,
                                          local_cluster: Any) -> None:
    """Two kubelets never share a containerd: each runtime holds only its own node's containers,
    and both nodes' pods keep running side by side."""
    cluster = local_cluster.cluster
    if cluster is None:
        pytest.skip("K8SSO_KUBECONFIG points at an external cluster: its runtimes are not ours to inspect")
    for node in ("local-cpu", "local-gpu"):
        body = _pod(f"on-{node}", ["sleep", "600"], **_on(node))
        body["spec"]["containers"][0]["image"] = BUSYBOX
        create(core, namespace, body)
    pods = {node: wait_pod(core, namespace, f"on-{node}", lambda p: p.status.phase == "Running")
            for node in ("local-cpu", "local-gpu")}
    listed = {}
    for spec in cluster.nodes:
        socket = cluster.node_paths(spec).containerd_socket
        out = subprocess.run(["ctr", "--address", str(socket), "-n", "k8s.io", "containers", "ls", "-q"],
                             capture_output=True, text=True, check=True).stdout
        listed[spec.name] = set(out.split())
    assert not listed["local-cpu"] & listed["local-gpu"]
    for node, pod in pods.items():
        container_id = pod.status.container_statuses[0].container_id.removeprefix("containerd://")
        other = "local-gpu" if node == "local-cpu" else "local-cpu"
        assert container_id in listed[node] and container_id not in listed[other]
    for node in pods:
        assert core.read_namespaced_pod(f"on-{node}", namespace).status.phase == "Running"


def test_kubelets_authenticate_and_authorize_their_callers(core: client.CoreV1Api, local_cluster: Any) -> None:
    """Anonymous requests to a kubelet are refused (401); the API server's kubelet-client certificate
    passes (webhook authentication and authorization, as on real clusters); the node is registered under
    its own identity (the Node authorizer and NodeRestriction apply to it)."""
    import ssl
    import urllib.error
    import urllib.request

    cluster = local_cluster.cluster
    if cluster is None:
        pytest.skip("K8SSO_KUBECONFIG points at an external cluster: its kubelets' credentials are not ours")
    node = core.read_node("local-gpu")
    address = next(a.address for a in node.status.addresses if a.type == "InternalIP")
    url = f"https://{address}:{node.status.daemon_endpoints.kubelet_endpoint.port}/pods"
    anonymous = ssl.create_default_context(cafile=str(cluster.pki / "ca.crt"))  # also verifies the serving cert
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, context=anonymous, timeout=10)
    assert refused.value.code == 401
    apiserver = ssl.create_default_context(cafile=str(cluster.pki / "ca.crt"))
    apiserver.load_cert_chain(str(cluster.pki / "apiserver-kubelet-client.crt"),
                              str(cluster.pki / "apiserver-kubelet-client.key"))
    with urllib.request.urlopen(url, context=apiserver, timeout=10) as resp:
        assert resp.status == 200 and json.loads(resp.read())["kind"] == "PodList"
    assert node.metadata.labels["gpu-type"] == "nvidia-tesla-v100"
    assert node.status.capacity["nvidia.com/gpu"] == "2" and node.spec.taints[0].key == "gpu"
    # the node's own identity may not label itself into the restricted namespace (NodeRestriction)
    kubeconfig = cluster.node_paths(next(s for s in cluster.nodes if s.name == "local-gpu")).root / "kubeconfig"
    from kubernetes import config as kube_config

    as_node = client.CoreV1Api(kube_config.new_client_from_config(config_file=str(kubeconfig)))
    with pytest.raises(ApiException) as forbidden:
        as_node.patch_node("local-gpu", {"metadata": {"labels": {"node-restriction.kubernetes.io/x": "y"}}})
    assert forbidden.value.status == 403
    with pytest.raises(ApiException) as other:
        as_node.patch_node("local-cpu", {"metadata": {"labels": {"x": "y"}}})  # another node: Node authorizer
    assert other.value.status == 403

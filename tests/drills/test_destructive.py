"""Drills that break the control plane: kube-apiserver crashes (while a step runs and its
logs stream), a watch that expires (410 Gone after etcd compaction), a node deleted mid-run.

They run on a module-scoped ``LocalCluster`` of their own: a crashed component or a
deleted node must never leak into the session cluster the other modules share. After
every drill the cluster is restored (every component running, /readyz ok, nodes Ready).
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest
from k8sso_localcluster.controlplane import LocalCluster
from kubernetes import client, config
from zenml.enums import ExecutionStatus

from k8s_step_operator.kube.podwatch import PodWatch

from .conftest import Drill, delete_namespace, make_drill, make_namespace, settle

pytestmark = pytest.mark.cluster

N_LINES = 100
COUNTER = (
    "import time\n"
    f"for i in range({N_LINES}):\n"
    "    print(f'line {i}', flush=True)\n"
    "    time.sleep(0.1)\n"
)
EXPECTED = [f"line {i}" for i in range(N_LINES)]


@pytest.fixture(scope="module")
def drill_cluster() -> Iterator[LocalCluster]:
    with LocalCluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def drill_api(drill_cluster: LocalCluster) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(drill_cluster.kubeconfig))
    yield api
    api.close()


def _restore(cluster: LocalCluster) -> None:
    """Bring back whatever a drill left down; wait until the cluster is healthy again."""
    for name, proc in list(cluster.procs.items()):  # containerd before its kubelet (insertion order)
        if proc.poll() is not None:
            cluster.start_component(name, wait=False)
    cluster.wait_healthy(180)


@pytest.fixture
def ddrill(
    drill_cluster: LocalCluster, drill_api: client.ApiClient, mocker: Any, zenml_store: Any, console: Any,
    operator_logs: Any, request: pytest.FixtureRequest,
) -> Iterator[Drill]:
    namespace = make_namespace(drill_api, "dd-" + request.node.name.lower().replace("_", "-"))
    drill = make_drill(drill_cluster.kubeconfig, drill_api, namespace, mocker, zenml_store, console, operator_logs)
    try:
        yield drill
    finally:
        PodWatch.close_all()
        _restore(drill_cluster)
        delete_namespace(drill_api, namespace)


def _watch(drill: Drill) -> PodWatch:
    return PodWatch.shared(drill.operator.api, drill.namespace)


def test_apiserver_killed_and_restarted_while_step_runs_and_logs_stream(
    ddrill: Drill, drill_cluster: LocalCluster
) -> None:
    step = ddrill.submit(ddrill.step("survivor", COUNTER))
    waiting = ddrill.wait_async(step)
    ddrill.wait_line(step, "line 5")
    watch = _watch(ddrill)
    watches_before = watch.watch_requests

    drill_cluster.kill("apiserver")
    down_at = time.monotonic()
    time.sleep(3)  # the outage: the step keeps running and printing on its node meanwhile
    drill_cluster.start_component("apiserver")
    outage = time.monotonic() - down_at

    assert waiting.result(180) is ExecutionStatus.COMPLETED
    lines = ddrill.console.lines(step.prefix)
    assert lines == EXPECTED, f"outage {outage:.1f}s; lost or duplicated lines: {_diff(lines)}"
    assert watch.watch_requests > watches_before  # the shared watch resumed after the outage
    assert ddrill.reasons(step) == []
    ddrill.cleanup(step)
    settle(ddrill.api, ddrill.namespace)


def test_watch_expires_with_410_mid_step_and_is_relisted(ddrill: Drill, drill_cluster: LocalCluster) -> None:
    step = ddrill.submit(ddrill.step("relisted", COUNTER))
    waiting = ddrill.wait_async(step)
    ddrill.wait_line(step, "line 3")
    watch = _watch(ddrill)
    lists_before = watch.list_requests
    core = client.CoreV1Api(ddrill.api)
    for i in range(5):  # history the resumed watch will have to replay ...
        core.create_namespaced_config_map(ddrill.namespace, {"metadata": {"name": f"churn-{i}"}, "data": {"i": str(i)}})

    drill_cluster.kill("apiserver")
    compacted = drill_cluster.compact_etcd()  # ... and that etcd has forgotten
    drill_cluster.start_component("apiserver")

    assert waiting.result(180) is ExecutionStatus.COMPLETED
    assert watch.list_requests > lists_before, f"no relist after compaction at revision {compacted}"
    assert int(core.list_namespaced_pod(ddrill.namespace).metadata.resource_version) > compacted
    lines = ddrill.console.lines(step.prefix)
    assert lines == EXPECTED, f"lost or duplicated lines: {_diff(lines)}"
    ddrill.cleanup(step)
    settle(ddrill.api, ddrill.namespace)


def test_node_deleted_mid_run_fails_the_step_naming_the_node(ddrill: Drill, drill_cluster: LocalCluster) -> None:
    """The machine disappears (its kubelet and containerd die) and its Node object is deleted, as a
    cloud does on scale-down or spot preemption; the pod garbage collector then removes the pod."""
    step = ddrill.submit(ddrill.step("stranded", "import time\nprint('started', flush=True)\ntime.sleep(600)\n"))
    waiting = ddrill.wait_async(step)
    ddrill.wait_line(step, "started")
    node = ddrill.pod(step).spec.node_name
    assert node == "local-cpu"

    drill_cluster.kill(f"kubelet-{node}")
    drill_cluster.kill(f"containerd-{node}")
    client.CoreV1Api(ddrill.api).delete_node(node)

    assert waiting.result(240) is ExecutionStatus.FAILED
    [reason] = ddrill.reasons(step)
    assert reason.startswith(f"pod {ddrill.namespace}/{ddrill.pod_name(step)}: ")
    assert node in reason, reason
    assert not reason.endswith(": pod failed"), reason
    ddrill.cleanup(step)
    settle(ddrill.api, ddrill.namespace, timeout=60)  # the orphaned pod and its Secret removed


def _diff(lines: list[str]) -> str:
    seen: dict[str, int] = {}
    for line in lines:
        seen[line] = seen.get(line, 0) + 1
    missing = [line for line in EXPECTED if line not in seen]
    duplicated = sorted((line for line, n in seen.items() if n > 1), key=lambda t: int(t.split()[-1]))
    return f"missing {missing[:10]}{'...' if len(missing) > 10 else ''} ({len(missing)}), duplicated {duplicated[:10]}"

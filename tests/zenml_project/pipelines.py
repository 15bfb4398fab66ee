"""Pipelines the ZenML integration tests run in a subprocess, from a ZenML repo in a tmp dir.

Usage: python pipelines.py SCENARIO [--config RUN_CONFIG] [--flag PATH]
(the operator and namespace come from K8SSO_OPERATOR and K8SSO_NAMESPACE)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from kubernetes.client.models import V1Toleration
from zenml import CommandStep, pipeline, step
from zenml.config import DockerSettings, ResourceSettings

from k8s_step_operator import KubernetesStepOperatorSettings

IMAGE = os.environ.get("K8SSO_TEST_IMAGE", "registry.k8sso.local/k8sso/step:latest")
OPERATOR = os.environ.get("K8SSO_OPERATOR", "k8s-local")
NAMESPACE = os.environ.get("K8SSO_NAMESPACE", "zenml")
DOCKER = DockerSettings(skip_build=True, parent_image=IMAGE)


@step(step_operator=OPERATOR, settings={"docker": DOCKER})
def hello(n: int) -> int:
    for i in range(n):
        print(f"hello line {i}", flush=True)
    print(f"in-pod={bool(os.environ.get('KUBERNETES_SERVICE_HOST'))}", flush=True)
    return n * 2


@step
def check_double(value: int, expected: int) -> None:
    if value != expected:
        raise AssertionError(f"expected {expected}, got {value}")


@pipeline(enable_cache=False)
def hello_pipeline(n: int = 3) -> None:
    check_double(hello(n), expected=2 * n)


@step(step_operator=OPERATOR, settings={"docker": DOCKER})
def boom() -> int:
    print("about to fail", flush=True)
    raise ValueError("boom: the step itself failed")


@pipeline(enable_cache=False)
def failing_pipeline() -> None:
    boom()


@step(step_operator=OPERATOR, settings={"docker": DockerSettings(skip_build=True, parent_image="registry.k8sso.local/k8sso/none-such:1")})
def unpullable() -> int:
    return 1


@pipeline(enable_cache=False)
def unpullable_pipeline() -> None:
    unpullable()


# The settings example from ZenML's docs, verbatim apart from the import line above
# and the namespace, which the test chooses.
kubernetes_settings = KubernetesStepOperatorSettings(
    pod_settings={
        "node_selectors": {
            "cloud.google.com/gke-nodepool": "ml-pool",
            "kubernetes.io/arch": "amd64"
        },
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "gpu-type",
                                    "operator": "In",
                                    "values": ["nvidia-tesla-v100", "nvidia-tesla-p100"]
                                }
                            ]
                        }
                    ]
                }
            }
        },
        "tolerations": [
            V1Toleration(
                key="gpu",
                operator="Equal",
                value="present",
                effect="NoSchedule"
            ),
            V1Toleration(
                key="high-priority",
                operator="Exists",
                effect="PreferNoSchedule"
            )
        ],
        "resources": {
            "requests": {
                "cpu": "2",
                "memory": "4Gi",
                "nvidia.com/gpu": "1"
            },
            "limits": {
                "cpu": "4",
                "memory": "8Gi",
                "nvidia.com/gpu": "1"
            }
        },
        "annotations": {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "8080"
        },
        "volumes": [
            {
                "name": "data-volume",
                "persistentVolumeClaim": {
                    "claimName": "ml-data-pvc"
                }
            },
            {
                "name": "config-volume",
                "configMap": {
                    "name": "ml-config"
                }
            }
        ],
        "volume_mounts": [
            {
                "name": "data-volume",
                "mountPath": "/mnt/data"
            },
            {
                "name": "config-volume",
                "mountPath": "/etc/ml-config",
                "readOnly": True
            }
        ],
        "host_ipc": True,
        "image_pull_secrets": ["regcred", "gcr-secret"],
        "labels": {
            "app": "ml-pipeline",
            "environment": "production",
            "team": "data-science"
        }
    },
    kubernetes_namespace=NAMESPACE,
    service_account_name="zenml-pipeline-runner"
)


@step(step_operator=OPERATOR, settings={"step_operator": kubernetes_settings, "docker": DOCKER})
def train_on_gpu() -> str:
    with open("/etc/ml-config/learning_rate") as f:
        lr = f.read().strip()
    with open("/mnt/data/model.txt", "w") as f:
        f.write(f"trained with lr={lr}\n")
    print(f"trained with lr={lr}", flush=True)
    return lr


@pipeline(enable_cache=False)
def seed_pipeline() -> None:
    train_on_gpu()


@step(step_operator=OPERATOR, settings={"step_operator": {"pod_settings": {"labels": {"settings-key": "plain"}}}, "docker": DOCKER})
def keyed_plain() -> int:
    return 1


@step(step_operator=OPERATOR, settings={"step_operator.k8s": {"pod_settings": {"labels": {"settings-key": "flavor"}}}, "docker": DOCKER})
def keyed_flavor() -> int:
    return 2


@step(step_operator=OPERATOR, settings={f"step_operator:{OPERATOR}": {"pod_settings": {"labels": {"settings-key": "component"}}}, "docker": DOCKER})
def keyed_component() -> int:
    return 3


@pipeline(enable_cache=False)
def settings_keys_pipeline() -> None:
    keyed_plain()
    keyed_flavor()
    keyed_component()


@step(settings={"docker": DOCKER})
def from_config() -> int:
    print(f"in-pod={bool(os.environ.get('KUBERNETES_SERVICE_HOST'))}", flush=True)
    return 7


@pipeline(enable_cache=False)
def config_pipeline() -> None:
    from_config()


@step(step_operator=OPERATOR, settings={"docker": DOCKER})
def gated(flag: str) -> None:
    """Runs until the file ``flag`` exists (under ZenML's config dir, which ``local=True`` mounts)."""
    print("gated step waiting", flush=True)
    deadline = time.time() + 300
    while not os.path.exists(flag):
        if time.time() > deadline:
            raise TimeoutError(f"{flag} never appeared")
        time.sleep(0.2)
    print("gated step released", flush=True)


@pipeline(enable_cache=False)
def gated_pipeline(flag: str) -> None:
    gated(flag)


# ----------------------------------------------------------------------- command steps
# Two pods meet at ZenML's main address (rank 0's stable DNS name through the headless Service).
RENDEZVOUS = r"""
import os, socket, time
rank, count = int(os.environ["ZENML_KUBERNETES_POD_RANK"]), int(os.environ["ZENML_KUBERNETES_POD_COUNT"])
host, port = os.environ["ZENML_KUBERNETES_MAIN_ADDRESS"], int(os.environ["ZENML_KUBERNETES_MAIN_PORT"])
print(f"rank {rank} of {count} on {socket.gethostname()}, main {host}:{port}", flush=True)
if rank == 0:
    conn, _ = socket.create_server(("0.0.0.0", port)).accept()
    print(f"rank 0 got {conn.recv(100).decode()!r}", flush=True)
    conn.sendall(b"welcome")
else:
    deadline = time.time() + 60
    while True:
        try:
            conn = socket.create_connection((host, port), timeout=5)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    conn.sendall(f"hello from rank {rank}".encode())
    print(f"rank {rank} got {conn.recv(100).decode()!r}", flush=True)
"""
FAIL_FAST = r"""
import os, sys, time
rank = int(os.environ["ZENML_KUBERNETES_POD_RANK"])
print(f"rank {rank} started", flush=True)
if rank == 1:
    time.sleep(2)
    sys.exit(3)
time.sleep(600)
"""
COMMAND_SETTINGS = {"docker": DOCKER}

single_command = CommandStep(
    command=["python", "-c", "import socket; print('command step on', socket.gethostname(), flush=True)"],
    name="single_command", step_operator=OPERATOR, settings=COMMAND_SETTINGS,
)
rendezvous = CommandStep(
    command=["python", "-c", RENDEZVOUS], name="rendezvous", step_operator=OPERATOR,
    settings={**COMMAND_SETTINGS, "step_operator": {"pod_count": 2}},
)
fail_fast = CommandStep(
    command=["python", "-c", FAIL_FAST], name="fail_fast", step_operator=OPERATOR,
    settings={**COMMAND_SETTINGS, "step_operator": {"pod_count": 2, "delete_grace_period_seconds": 1}},
)


@pipeline(enable_cache=False)
def command_pipeline() -> None:
    single_command()
    rendezvous(after="single_command")


@pipeline(enable_cache=False)
def fail_fast_pipeline() -> None:
    fail_fast()


@step(step_operator=OPERATOR, settings={"docker": DOCKER, "step_operator": {"pod_count": 2}})
def two_pod_regular() -> int:
    return 1


@pipeline(enable_cache=False)
def multi_pod_regular_pipeline() -> None:
    two_pod_regular()


# ----------------------------------------------------------------------- resource pools
@step(
    step_operator=OPERATOR,
    settings={
        "docker": DOCKER,
        "resources": ResourceSettings(cpu_count=0.5, memory="300MiB", allocation_wait_timeout_seconds=60),
        "step_operator": {"cleanup_policy": "keep"},
    },
)
def pooled() -> str:
    return "pooled"


@pipeline(dynamic=True, enable_cache=False, settings={"docker": DOCKER})
def pool_pipeline() -> None:
    pooled()


def _with_pool(pipe):
    """Resource pools are granted in this process (see pool_backend.py), as ZenML Pro's service would."""
    from pool_backend import GrantingPool
    from zenml.client import Client

    GrantingPool(Client().zen_store, overrides={"pod_settings": {"labels": {"granted-by": "test-pool"}}})
    return pipe


# ----------------------------------------------------------------------- preflight
@step(step_operator=OPERATOR, settings={"docker": DOCKER})
def first() -> int:
    print("FIRST STEP RAN", flush=True)
    return 1


@step(step_operator=OPERATOR, settings={"docker": DOCKER})
def second(value: int) -> int:
    return value + 1


@step(step_operator=OPERATOR, settings={"docker": DOCKER})
def third(value: int) -> int:
    return value + 1


@pipeline(enable_cache=False)
def preflight_pipeline() -> None:
    """Three steps on the operator; a run config (``--config``) gives the third a mistake."""
    third(second(first()))


SCENARIOS = {
    "preflight": preflight_pipeline,
    "command": command_pipeline,
    "fail-fast": fail_fast_pipeline,
    "multi-pod-regular": multi_pod_regular_pipeline,
    "pool": pool_pipeline,
    "hello": hello_pipeline,
    "failing": failing_pipeline,
    "unpullable": unpullable_pipeline,
    "seed": seed_pipeline,
    "settings-keys": settings_keys_pipeline,
    "config": config_pipeline,
    "gated": gated_pipeline,
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--config", help="run-config YAML")
    parser.add_argument("--flag", help="gated: the file whose existence lets the step end")
    args = parser.parse_args()
    pipe = SCENARIOS[args.scenario]
    if args.scenario == "pool":
        pipe = _with_pool(pipe)
    if args.config:
        pipe = pipe.with_options(config_path=args.config)
    run = pipe(flag=args.flag) if args.scenario == "gated" else pipe()
    print(f"RUN-STATUS {run.status.value} {run.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

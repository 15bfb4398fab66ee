"""Both step operators built in-process the way ZenML builds them, driven through the
same calls ZenML's step launcher makes: ``submit_with_allocation`` → ``wait`` →
``cleanup_step_submission``.

ZenML builds a component from its stored model with ``flavor.implementation_class(
name=..., id=..., config=flavor.config_class(**configuration), flavor=..., type=...,
user=..., created=..., updated=...)``; :func:`make_operator` does exactly that with a
configuration dict, so no ZenML store is needed for our operator. The built-in one
calls ``Client().active_user`` in ``submit``, so its worker has a (throw-away, local)
ZenML store.

The step ZenML would hand over is replaced by :class:`FakeInfo`/:class:`FakeStepRun`,
which carry exactly the attributes both operators read (run and step names and ids,
the image, the step's settings — empty, so the component configuration applies).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from zenml.enums import StackComponentType

IMAGE = os.environ.get("K8SBENCH_IMAGE", "registry.k8sso.local/k8sso/step:latest")
CONTEXT = "k8s-step-operator-local"

# The step process: sleep, then note the wall-clock time (a finer clock than the pod
# status' one-second timestamps) in a file and on stdout, and leave at once.
STEP_SCRIPT = r"""
import os, sys, time
exit_file, seconds = sys.argv[1], float(sys.argv[2])
print("bench step: sleeping %.3f s" % seconds, flush=True)
time.sleep(seconds)
fd = os.open(exit_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
t = time.time()
os.write(fd, b"%.6f" % t)
os.close(fd)
os.write(1, b"BENCH-EXIT %.6f\n" % t)
os._exit(0)
"""


def step_command(exit_file: str, seconds: float) -> list[str]:
    """The entrypoint command of a bench step (the step image's Python)."""
    return ["python", "-c", STEP_SCRIPT, exit_file, f"{seconds:.3f}"]


def light_command(token: str, seconds: float) -> list[str]:
    """A scale step: busybox's shell prints its token twice around a sleep (no Python, no ZenML), so
    hundreds of real containers fit the machine; the token tells whose log a line came from."""
    return ["sh", "-c", f"echo {token} start; sleep {seconds:g}; echo {token} done"]


def light_image() -> str:
    """The local registry's busybox (the image every node already pulled for the cluster's own tests)."""
    from k8sso_localcluster.images import current

    return current("busybox")


def read_exit(exit_file: str) -> float | None:
    try:
        with open(exit_file) as fh:
            return float(fh.read().strip())
    except (OSError, ValueError):
        return None


@dataclass
class _StepConfig:
    settings: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    command: Any = None


@dataclass
class FakeStepRun:
    """What ``wait``/``get_status``/``cleanup_step_submission`` read from a StepRunResponse."""

    id: uuid.UUID
    name: str
    config: _StepConfig = field(default_factory=_StepConfig)
    regular_inputs: dict = field(default_factory=dict)


@dataclass
class FakeInfo:
    """What ``submit`` reads from a StepRunInfo."""

    step_run: FakeStepRun
    run_name: str
    run_id: uuid.UUID
    pipeline_step_name: str
    pipeline: Any
    snapshot: Any
    config: _StepConfig = field(default_factory=_StepConfig)
    # StackComponent.get_settings() reads `.pipeline_configuration.settings` for containers
    # that are not one of ZenML's own classes: empty, so the component config applies.
    pipeline_configuration: Any = field(default_factory=lambda: SimpleNamespace(settings={}))
    image: str = IMAGE

    @property
    def step_run_id(self) -> uuid.UUID:
        return self.step_run.id

    def get_image(self, key: str) -> str:
        return self.image


def make_step(
    step_name: str, run_name: str, pipeline: str = "bench", image: str = IMAGE
) -> tuple[FakeInfo, FakeStepRun]:
    step_run = FakeStepRun(id=uuid.uuid4(), name=step_name)
    info = FakeInfo(
        image=image,
        step_run=step_run,
        run_name=run_name,
        run_id=uuid.uuid5(uuid.NAMESPACE_URL, f"k8sbench-run/{run_name}"),  # a run's steps share its id, as in ZenML
        pipeline_step_name=step_name,
        pipeline=SimpleNamespace(name=pipeline),
        snapshot=SimpleNamespace(project_id=uuid.uuid5(uuid.NAMESPACE_URL, "k8sbench-project")),
    )
    return info, step_run


def fan_out_snapshot(step_name: str, image: str) -> Any:
    """What ZenML hands every stack component's ``get_docker_builds`` before a dynamic pipeline runs: a
    snapshot whose step configurations are the config templates of the steps it fans out (an invocation
    ``step_name``, ``step_name_2``, ... gets its template's configuration); here one, with no step settings
    (the component's apply) and a skipped build of ``image``."""
    from zenml.config import DockerSettings

    docker = DockerSettings(skip_build=True, parent_image=image)
    config = SimpleNamespace(
        uses_step_operator=lambda name: True, command=None, parameters={}, settings={}, docker_settings=docker
    )
    template = SimpleNamespace(
        config=config, spec=SimpleNamespace(inputs={}), pipeline_configuration=SimpleNamespace(settings={})
    )
    return SimpleNamespace(
        step_configurations={step_name: template}, is_dynamic=True,
        pipeline_configuration=SimpleNamespace(name="bench", settings={}, docker_settings=docker),
    )


KINDS = ("k8s", "builtin")


def exit_dir_mount(exit_dir: str) -> dict:
    """Pod settings that mount the bench's exit-file directory at the same path: on real nodes a step's
    files live in its container, so the time it writes at exit must go to a host directory."""
    return {
        "volumes": [{"name": "bench-exit", "hostPath": {"path": exit_dir, "type": "Directory"}}],
        "volume_mounts": [{"name": "bench-exit", "mountPath": exit_dir}],
    }


def make_operator(
    kind: str, namespace: str, kubeconfig: str, config: dict | None = None, exit_dir: str | None = None
) -> Any:
    """Our ``k8s`` operator or ZenML's ``kubernetes`` one, built like ZenML builds components (the same
    ``exit_dir`` mount for both)."""
    now = dt.datetime.now(dt.timezone.utc)
    extra = dict(config or {})
    if exit_dir:
        pod = dict(extra.get("pod_settings") or {})
        mount = exit_dir_mount(exit_dir)
        for key in ("volumes", "volume_mounts"):
            pod[key] = [*pod.get(key, []), *mount[key]]
        extra["pod_settings"] = pod
    if kind == "k8s":
        from k8s_step_operator.flavor import K8sStepOperatorFlavor

        flavor = K8sStepOperatorFlavor()
        # not ``local``: these steps run no ZenML code, so both operators get the same settings (with it,
        # ours would also mount ZenML's stores and send their environment)
        configuration = {"kubernetes_namespace": namespace, "kubeconfig": kubeconfig, **extra}
    elif kind == "builtin":
        from zenml.integrations.kubernetes.flavors import KubernetesStepOperatorFlavor

        # ZenML's operator has no kubeconfig field: it loads $KUBECONFIG (context by name).
        os.environ["KUBECONFIG"] = kubeconfig
        flavor = KubernetesStepOperatorFlavor()
        configuration = {"kubernetes_namespace": namespace, "kubernetes_context": CONTEXT, **extra}
    else:
        raise ValueError(f"unknown operator kind {kind!r}")
    return flavor.implementation_class(
        name=f"bench-{kind}",
        id=uuid.uuid4(),
        config=flavor.config_class(**configuration),
        flavor=flavor.name,
        type=StackComponentType.STEP_OPERATOR,
        user=None,
        created=now,
        updated=now,
        connector_requirements=flavor.service_connector_requirements,
    )


def warm_up(kind: str, operator: Any) -> None:
    """One-time costs that are not per step, for both: ZenML store start, API client creation."""
    from zenml.client import Client

    Client().active_user  # noqa: B018 - initialises the local store once
    if kind == "builtin":
        operator.get_kube_client()
    else:
        operator.api  # noqa: B018


def submit(operator: Any, info: FakeInfo, command: list[str], environment: dict[str, str]) -> None:
    """What StepLauncher._run_step_with_step_operator calls (no resource allocation)."""
    operator.submit_with_allocation(
        info=info, entrypoint_command=command, environment=dict(environment), allocated_resource_request=None
    )

"""Fault drills: the operator driven the way ZenML drives it, against a real control plane.

ZenML's side of a step (``StepRunInfo``, ``StepRunResponse``, the store the failure
reason is written to) is stood in with pytest-mock objects that carry a real
``StepConfiguration``; the cluster side is never mocked.

Where the drills run:

* most drills use the session cluster (``local_cluster``) in a fresh namespace each;
* drills that crash control-plane components or delete a node use a module-scoped
  ``LocalCluster`` of their own (``drill_cluster`` in ``test_destructive.py``), so a
  drill that goes wrong can never leave the session cluster half-broken for the
  modules that run after it. It costs one cluster start (~10-15 s).

``test_zz_no_leaks.py`` must run after every other test of the session (tests/unit and
tests/zenml sort after tests/drills): ``pytest_collection_modifyitems`` below moves it
to the very end, whatever order collection produced.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from k8s_step_operator import names
from k8s_step_operator.kube.podwatch import PodWatch

from ..polling import wait_until

LEAK_MODULE = "test_zz_no_leaks.py"
PY_IMAGE = os.environ["K8SSO_TEST_IMAGE"]  # the content-tagged step image (tests/conftest.py)
MANAGED = "app.kubernetes.io/managed-by=k8s-step-operator"


# ----------------------------------------------------------------- ordering
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    """Move the leak check to the end of the whole session (after tests/unit and tests/zenml)."""
    last = [item for item in items if item.path.name == LEAK_MODULE]
    if last:
        items[:] = [item for item in items if item.path.name != LEAK_MODULE] + last


# ------------------------------------------------------------------ helpers
def bounded(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    """Run ``fn`` in a daemon thread; its result, or AssertionError if it is not done within ``timeout``."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=body, name=f"bounded-{what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"{what} did not return within {timeout:.0f}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def make_namespace(api: client.ApiClient, prefix: str, labels: Optional[dict] = None) -> str:
    """A fresh namespace (test-labelled), returned once its default ServiceAccount exists."""
    core = client.CoreV1Api(api)
    name = f"{prefix[:40].rstrip('-')}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"k8sso-test": "true", **(labels or {})}))
    )
    wait_until(lambda: core.read_namespaced_service_account("default", name), 60, f"default SA in {name}")
    return name


def delete_namespace(api: client.ApiClient, name: str) -> None:
    try:
        client.CoreV1Api(api).delete_namespace(name, propagation_policy="Background")
    except ApiException as exc:
        if exc.status != 404:
            raise


def _exists(read: Callable[[str, str], Any], namespace: str, name: str) -> bool:
    """Whether ``read(name, namespace)`` finds the object (404: False; any other error is raised)."""
    try:
        read(name, namespace)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def pod_exists(api: client.ApiClient, namespace: str, name: str) -> bool:
    return _exists(client.CoreV1Api(api).read_namespaced_pod, namespace, name)


def secret_exists(api: client.ApiClient, namespace: str, name: str) -> bool:
    return _exists(client.CoreV1Api(api).read_namespaced_secret, namespace, name)


def managed_objects(api: client.ApiClient, namespace: str) -> dict[str, list[str]]:
    """Names of the operator's Jobs, pods and Secrets in ``namespace``."""
    core = client.CoreV1Api(api)
    return {
        "jobs": sorted(
            j.metadata.name for j in client.BatchV1Api(api).list_namespaced_job(namespace, label_selector=MANAGED).items
        ),
        "pods": sorted(p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector=MANAGED).items),
        "secrets": sorted(
            s.metadata.name for s in core.list_namespaced_secret(namespace, label_selector=MANAGED).items
        ),
    }


def settle(api: client.ApiClient, namespace: str, pods: Optional[list[str]] = None, timeout: float = 30.0) -> None:
    """Wait (bounded) until the operator's objects in ``namespace`` are exactly the kept ``pods`` (with
    the Jobs that own them until their TTL) and no Secret.

    A deleted Job's pods and Secret are removed by garbage collection, a moment after clean-up returns.
    """
    core = client.CoreV1Api(api)
    jobs = {core.read_namespaced_pod(p, namespace).metadata.labels["batch.kubernetes.io/job-name"] for p in pods or []}
    expected = {"jobs": sorted(jobs), "pods": sorted(pods or []), "secrets": []}
    wait_until(lambda: managed_objects(api, namespace) == expected, timeout,
               f"the operator's objects in {namespace} to be {expected}")


def py(code: str) -> list[str]:
    return ["python", "-c", code]


# ------------------------------------------------------------------ console
class Console:
    """Stands in for the orchestrator's stdout: the operator streams step logs to ``sys.stdout``.

    pytest re-points ``sys.stdout`` at its own capture when the test's call phase starts,
    so the stand-in is installed lazily (``install()``, called by ``Drill.submit``).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch | None = None) -> None:
        self._lock = threading.Lock()
        self._chunks: list[str] = []
        self._monkeypatch = monkeypatch

    def install(self) -> None:
        if sys.stdout is not self and self._monkeypatch is not None:
            self._monkeypatch.setattr(sys, "stdout", self)

    def write(self, text: str) -> int:
        with self._lock:
            self._chunks.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    @property
    def text(self) -> str:
        with self._lock:
            return "".join(self._chunks)

    def lines(self, prefix: str) -> list[str]:
        """Lines streamed for one step (``[step] `` prefix removed)."""
        return [line[len(prefix):] for line in self.text.splitlines() if line.startswith(prefix)]


class LogRecords(logging.Handler):
    """The operator's own log records (progress, failure reasons)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock2:
            self.records.append(record)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        with self._lock2:
            return [r.getMessage() for r in self.records if r.levelno >= level]


# ------------------------------------------------------------- ZenML side
@dataclass
class Step:
    """One step run as ZenML hands it to the operator (stand-ins with a real StepConfiguration)."""

    name: str
    id: uuid.UUID
    info: Any
    run: Any
    command: list[str]
    environment: dict[str, str]

    @property
    def prefix(self) -> str:
        return f"[{self.name}] "


class Waiting:
    """A call running in a daemon thread; ``result(timeout)`` is bounded."""

    def __init__(self, fn: Callable[[], Any], what: str) -> None:
        self.what = what
        self._box: dict[str, Any] = {}

        def body() -> None:
            try:
                self._box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to result()
                self._box["error"] = exc

        self.thread = threading.Thread(target=body, name=what, daemon=True)
        self.thread.start()

    def result(self, timeout: float) -> Any:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"{self.what} did not return within {timeout:.0f}s")
        if "error" in self._box:
            raise self._box["error"]
        return self._box.get("value")


@dataclass
class Drill:
    """A ``K8sStepOperator`` built like ZenML builds it, plus step-run stand-ins and what it told ZenML."""

    operator: Any
    namespace: str
    api: client.ApiClient
    mocker: Any
    store: Any
    console: Console
    logs: LogRecords
    run_id: uuid.UUID = field(default_factory=uuid.uuid4)
    run_name: str = field(default_factory=lambda: f"drill-run-{uuid.uuid4().hex[:8]}")
    pipeline: str = "drill_pipeline"
    _pods: dict[str, str] = field(default_factory=dict)

    def step(
        self,
        name: str,
        code: str,
        settings: Optional[dict] = None,
        image: str = PY_IMAGE,
        environment: Optional[dict] = None,
        command: Optional[list[str]] = None,
    ) -> Step:
        from zenml.config.step_configurations import StepConfiguration
        from zenml.config.step_run_info import StepRunInfo
        from zenml.models import StepRunResponse
        from zenml.utils import settings_utils

        key = settings_utils.get_stack_component_setting_key(self.operator)
        config = StepConfiguration(name=name, settings={key: settings} if settings is not None else {})
        step_id = uuid.uuid4()
        run = self.mocker.NonCallableMagicMock(spec=StepRunResponse, name=f"StepRunResponse[{name}]")
        run.id, run.name, run.config = step_id, name, config
        run.regular_inputs = {}
        info = self.mocker.NonCallableMagicMock(spec=StepRunInfo, name=f"StepRunInfo[{name}]")
        info.step_run_id, info.run_id, info.run_name = step_id, self.run_id, self.run_name
        info.pipeline_step_name, info.config, info.step_run = name, config, run
        info.pipeline = self.mocker.NonCallableMagicMock(name="PipelineConfiguration")
        info.pipeline.name = self.pipeline
        info.get_image = self.mocker.Mock(return_value=image)
        info.snapshot = self.mocker.NonCallableMagicMock(name="PipelineSnapshotResponse")
        info.snapshot.project_id = uuid.UUID(int=7)
        return Step(name, step_id, info, run, command or py(code), dict(environment or {"DRILL_STEP": name}))

    def submit(self, step: Step) -> Step:
        self.console.install()
        self.operator.submit(step.info, step.command, step.environment)
        return step

    def job_name(self, step: Step) -> str:
        return names.pod_name(None, self.pipeline, step.name, str(step.id))

    def pod_name(self, step: Step, timeout: float = 30.0) -> str:
        """The name the Job controller gave the step's (first) pod; remembered once seen."""
        if step.name not in self._pods:
            selector = f"batch.kubernetes.io/job-name={self.job_name(step)}"
            core = client.CoreV1Api(self.api)

            def first() -> Optional[str]:
                items = core.list_namespaced_pod(self.namespace, label_selector=selector).items
                return min(p.metadata.name for p in items) if items else None

            self._pods[step.name] = wait_until(first, timeout, f"a pod of job {self.job_name(step)}")
        return self._pods[step.name]

    def pod(self, step: Step) -> Any:
        return client.CoreV1Api(self.api).read_namespaced_pod(self.pod_name(step), self.namespace)

    def wait(self, step: Step, timeout: float = 120.0) -> Any:
        return bounded(lambda: self.operator.wait(step.run), timeout, f"wait({step.name})")

    def wait_async(self, step: Step) -> "Waiting":
        """Start ``wait()`` in the background, as ZenML's launcher blocks on it; logs stream meanwhile."""
        return Waiting(lambda: self.operator.wait(step.run), f"wait({step.name})")

    def status(self, step: Step, timeout: float = 60.0) -> Any:
        return bounded(lambda: self.operator.get_status(step.run), timeout, f"get_status({step.name})")

    def cleanup(self, step: Step, timeout: float = 60.0) -> None:
        bounded(lambda: self.operator.cleanup_step_submission(step.run), timeout, f"cleanup({step.name})")

    def reasons(self, step: Step) -> list[str]:
        """Failure reasons the operator wrote into this step run's exception info."""
        found = []
        for call in self.store.update_run_step.call_args_list:
            step_run_id, update = call.args
            if step_run_id == step.id:
                found.append(update.exception_info.message)
        return found

    def wait_running(self, step: Step, timeout: float = 60.0) -> Any:
        def running() -> Any:
            pod = self.pod(step)
            for cs in pod.status.container_statuses or []:
                if cs.name == "main" and cs.state.running:
                    return pod
            return None

        return wait_until(running, timeout, f"{step.name}'s main container running")

    def wait_line(self, step: Step, text: str, timeout: float = 60.0) -> None:
        wait_until(lambda: any(text in line for line in self.console.lines(step.prefix)), timeout,
                   f"{text!r} streamed from {step.name}")


def build_operator(kubeconfig: str | Path, namespace: str, **config: Any) -> Any:
    """A K8sStepOperator constructed the way ZenML's StackComponent factory does."""
    from zenml.enums import StackComponentType

    from k8s_step_operator.flavor import K8sStepOperatorConfig
    from k8s_step_operator.step_operator import K8sStepOperator

    now = dt.datetime.now(dt.timezone.utc)
    return K8sStepOperator(
        name="drill-k8s",
        id=uuid.uuid4(),
        config=K8sStepOperatorConfig(kubeconfig=str(kubeconfig), kubernetes_namespace=namespace, **config),
        flavor="k8s",
        type=StackComponentType.STEP_OPERATOR,
        user=None,
        created=now,
        updated=now,
    )


@pytest.fixture
def zenml_store(mocker: Any) -> Any:
    """ZenML's store as the operator reaches it (``Client().zen_store``): records failure reasons."""
    store = mocker.MagicMock(name="zen_store")
    store.get_run_step.return_value.exception_info = None
    user = mocker.NonCallableMagicMock(id=uuid.UUID(int=1), oidc_claims={})
    mocker.patch("zenml.client.Client", return_value=mocker.NonCallableMagicMock(zen_store=store, active_user=user))
    return store


@pytest.fixture
def console(monkeypatch: pytest.MonkeyPatch) -> Console:
    return Console(monkeypatch)


@pytest.fixture
def operator_logs() -> Iterator[LogRecords]:
    handler = LogRecords()
    logger = logging.getLogger("k8s_step_operator")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


@pytest.fixture
def drill_namespace(api_client: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    base = "d-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())
    name = make_namespace(api_client, base)
    yield name
    delete_namespace(api_client, name)


def make_drill(
    kubeconfig: str | Path,
    api: client.ApiClient,
    namespace: str,
    mocker: Any,
    store: Any,
    console: Console,
    logs: LogRecords,
    **config: Any,
) -> Drill:
    operator = build_operator(kubeconfig, namespace, **config)
    return Drill(operator, namespace, api, mocker, store, console, logs)


@pytest.fixture
def drill(
    local_cluster: Any,
    api_client: client.ApiClient,
    drill_namespace: str,
    mocker: Any,
    zenml_store: Any,
    console: Console,
    operator_logs: LogRecords,
) -> Iterator[Drill]:
    """An operator on the session cluster, in a fresh namespace."""
    yield make_drill(local_cluster.kubeconfig, api_client, drill_namespace, mocker, zenml_store, console, operator_logs)
    PodWatch.close_all()


def restricted_profile() -> dict:
    """Pod settings that satisfy PodSecurity ``restricted``."""
    return {
        "security_context": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "container_security_context": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }


__all__ = [
    "Console",
    "Drill",
    "PY_IMAGE",
    "Step",
    "bounded",
    "build_operator",
    "delete_namespace",
    "make_drill",
    "make_namespace",
    "managed_objects",
    "pod_exists",
    "py",
    "restricted_profile",
    "secret_exists",
    "settle",
    "wait_until",
]

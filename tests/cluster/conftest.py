"""Fixtures of the tests that call the step runtimes directly: a connection to the test's namespace, a run."""

from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest

from k8s_step_operator.steps.cluster import Cluster, connect
from k8s_step_operator.steps.resource_runtime import RunInfo


@pytest.fixture
def cluster(local_cluster: Any, namespace: str) -> Iterator[Cluster]:
    """The local cluster, as a step connects to it, in the test's namespace."""
    target = connect(namespace, kubeconfig=str(local_cluster.kubeconfig))
    yield target
    target.api.close()


@pytest.fixture
def run() -> RunInfo:
    """A pipeline run whose created objects are recorded in ``run.recorded``."""
    recorded: list[dict[str, Any]] = []
    info = RunInfo(run_id=str(uuid.uuid4()), run_name="itest", step_name="step", record=recorded.append)
    info.recorded = recorded  # type: ignore[attr-defined]
    return info

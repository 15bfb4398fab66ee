"""pytest fixtures: one local cluster per session, a fresh namespace per test.

Enable with ``pytest -p k8sso_localcluster.pytest_plugin`` or from a
conftest (``pytest_plugins = [...]``). ``K8SSO_KUBECONFIG`` points the fixtures
at an already running cluster instead of starting one. In CI (``CI`` set) a
control plane that cannot start is an error, never a skip.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from kubernetes import client, config

from .controlplane import LocalCluster


class ClusterHandle:
    """What tests get: the kubeconfig and a client factory (and the cluster, when we own it)."""

    def __init__(self, kubeconfig: Path, cluster: LocalCluster | None) -> None:
        self.kubeconfig = kubeconfig
        self.cluster = cluster

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig))


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[ClusterHandle]:
    external = os.environ.get("K8SSO_KUBECONFIG")
    if external:
        yield ClusterHandle(Path(external), None)
        return
    with LocalCluster() as cluster:
        yield ClusterHandle(cluster.kubeconfig, cluster)


@pytest.fixture(scope="session")
def api_client(local_cluster: ClusterHandle) -> Iterator[client.ApiClient]:
    api = local_cluster.api_client()
    yield api
    api.close()


@pytest.fixture
def namespace(api_client: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace, deleted (without waiting) after the test."""
    core = client.CoreV1Api(api_client)
    base = request.node.name.lower().replace("_", "-")
    name = "t-" + "".join(c for c in base if c.isalnum() or c == "-")[:40].strip("-") + "-" + uuid.uuid4().hex[:6]
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"k8sso-test": "true"})))
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")

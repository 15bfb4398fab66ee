"""A ZenML repository in a tmp dir, wired to the local cluster through the `k8s` flavor.

Every ZenML command runs in a subprocess with its own ZENML_CONFIG_PATH, as a user's shell would,
so these tests never share ZenML state with the test process.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
from kubernetes import client

from ..zenml_support import BIN, register_k8s_stack, zenml_env

PROJECT = Path(__file__).resolve().parent.parent / "zenml_project"
OPERATOR = "k8s-local"


@dataclass
class ZenMLProject:
    root: Path
    env: dict[str, str]
    namespace: str

    def zenml(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run([str(BIN / "zenml"), *args], check=check, timeout=timeout)

    def python(self, *args: str, check: bool = False, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
        return self.run([sys.executable, *args], check=check, timeout=timeout, env=env)

    def run(self, argv: list[str], check: bool, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            argv, cwd=self.root, env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def pipeline(self, scenario: str, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return self.python("pipelines.py", scenario, *extra, env=env)

    def start(self, scenario: str, *extra: str, env: dict | None = None) -> subprocess.Popen:
        """The pipeline in the background, its output (both streams) in ``stdout``."""
        return subprocess.Popen([sys.executable, "pipelines.py", scenario, *extra], cwd=self.root,
                                env={**self.env, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)


@pytest.fixture(scope="session")
def zenml_namespace(api_client: client.ApiClient) -> str:
    core = client.CoreV1Api(api_client)
    name = "zenml-it"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"k8sso-test": "true"})))
    yield name
    core.delete_namespace(name, propagation_policy="Background")


def make_project(root: Path, namespace: str, kubeconfig: Optional[Path], *options: str) -> ZenMLProject:
    """A ZenML repo in ``root`` with the test pipelines and an active stack whose `k8s` operator
    (:data:`OPERATOR`) runs steps in ``namespace``; see ``register_k8s_stack`` for the connection."""
    for script in ("pipelines.py", "pool_backend.py"):
        shutil.copy(PROJECT / script, root / script)
    project = ZenMLProject(root, zenml_env(root, OPERATOR, K8SSO_NAMESPACE=namespace), namespace)
    register_k8s_stack(project.zenml, OPERATOR, namespace, kubeconfig, "k8s-stack", 60, *options)
    return project


@pytest.fixture(scope="session")
def zenml_project(tmp_path_factory: pytest.TempPathFactory, local_cluster, zenml_namespace: str) -> ZenMLProject:
    return make_project(tmp_path_factory.mktemp("zenml-project"), zenml_namespace, local_cluster.kubeconfig)

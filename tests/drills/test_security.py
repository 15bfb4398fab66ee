"""Security drills: least-privilege RBAC exactly as ``k8s-step-operator rbac`` prints it,
clear "forbidden: needs <verb> on <resource>" errors, PodSecurity ``restricted``.

The operator runs with a kubeconfig holding a real token of the ServiceAccount (TokenRequest),
the way a user would configure it, not with an impersonating admin client.
ZenML secret values never reaching pod specs, events or logs is checked with a real
pipeline in ``test_zenml_drills.py``.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from zenml.enums import ExecutionStatus

from k8s_step_operator import rbac
from k8s_step_operator.kube.podwatch import PodWatch
from k8s_step_operator.steps.cluster import connect
from k8s_step_operator.steps.errors import Forbidden
from k8s_step_operator.steps.resource_runtime import RunInfo
from k8s_step_operator.steps.volume_runtime import run_snapshot, run_volume
from k8s_step_operator.steps.volume_spec import build_snapshot_spec, build_volume_spec

from .. import rbac_support
from .conftest import (
    Drill,
    delete_namespace,
    make_drill,
    make_namespace,
    managed_objects,
    restricted_profile,
    settle,
)

pytestmark = pytest.mark.cluster

SA = "drill-runner"
HELLO = "import os\nprint('hello from', os.environ['DRILL_STEP'], flush=True)\nprint('uid', os.getuid(), flush=True)\n"


def printed_rbac(namespace: str, *extra: str) -> str:
    return rbac_support.printed_rbac(namespace, SA, *extra)


def without_verb(text: str, resource: str, verb: str) -> str:
    """The printed RBAC with one verb removed from the Role's rule for ``resource``."""
    docs = list(yaml.safe_load_all(text))
    for doc in docs:
        if doc["kind"] in ("Role", "ClusterRole"):
            for rule in doc["rules"]:
                if rule["resources"] == [resource]:
                    rule["verbs"].remove(verb)
    return yaml.safe_dump_all(docs)


def token_kubeconfig(admin_kubeconfig: Path, api: client.ApiClient, namespace: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount with a bound token."""
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    cluster = admin["clusters"][0]["cluster"]
    token = rbac_support.service_account_token(api, namespace, SA)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "drill", "cluster": cluster}],
        "users": [{"name": SA, "user": {"token": token}}],
        "contexts": [{"name": SA, "context": {"cluster": "drill", "user": SA, "namespace": namespace}}],
        "current-context": SA,
    }))
    path.chmod(0o600)
    return path


class Rbac:
    """Applies printed RBAC in a namespace and hands out an SA kubeconfig; removes cluster-scoped objects."""

    def __init__(self, local_cluster: Any, api: client.ApiClient, namespace: str, tmp: Path) -> None:
        self.admin_kubeconfig = Path(local_cluster.kubeconfig)
        self.api, self.namespace, self.tmp = api, namespace, tmp

    def apply(self, text: str) -> Path:
        rbac_support.kubectl_apply(self.admin_kubeconfig, text)
        return token_kubeconfig(self.admin_kubeconfig, self.api, self.namespace, self.tmp / f"sa-{uuid.uuid4().hex[:6]}")

    def remove_cluster_objects(self) -> None:
        name = rbac.cluster_role_name(self.namespace, SA)
        api = client.RbacAuthorizationV1Api(self.api)
        for call in (api.delete_cluster_role_binding, api.delete_cluster_role):
            try:
                call(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


@pytest.fixture
def sa_rbac(local_cluster: Any, api_client: client.ApiClient, drill_namespace: str, tmp_path: Path) -> Iterator[Rbac]:
    helper = Rbac(local_cluster, api_client, drill_namespace, tmp_path)
    yield helper
    helper.remove_cluster_objects()


def sa_drill(kubeconfig: Path, request: Any, namespace: str, **config: Any) -> Drill:
    fx = request.getfixturevalue
    return make_drill(kubeconfig, fx("api_client"), namespace, fx("mocker"), fx("zenml_store"), fx("console"),
                      fx("operator_logs"), **config)


# ------------------------------------------------------------------- RBAC
def test_operator_and_resource_steps_work_under_exactly_the_printed_rbac(
    sa_rbac: Rbac, drill_namespace: str, request: pytest.FixtureRequest
) -> None:
    kubeconfig = sa_rbac.apply(printed_rbac(drill_namespace, "--resource-steps"))
    drill = sa_drill(kubeconfig, request, drill_namespace)
    try:
        ok = drill.submit(drill.step("sa-ok", HELLO))
        bad = drill.submit(drill.step("sa-bad", "import sys\nprint('failing', flush=True)\nsys.exit(4)\n"))
        assert drill.wait(ok, 90) is ExecutionStatus.COMPLETED
        assert drill.wait(bad, 90) is ExecutionStatus.FAILED
        assert drill.console.lines(ok.prefix)[0] == "hello from sa-ok"
        assert drill.console.lines(bad.prefix) == ["failing"]
        assert drill.status(ok) is ExecutionStatus.COMPLETED
        drill.cleanup(ok)
        drill.cleanup(bad)
        settle(drill.api, drill_namespace, [drill.pod_name(bad)])
        assert "403" not in PodWatch.shared(drill.operator.api, drill_namespace).last_error

        cluster = connect(drill_namespace, kubeconfig=str(kubeconfig))
        run = RunInfo(run_id=str(uuid.uuid4()), run_name="sa")
        volume = run_volume(build_volume_spec("data", "1Gi", storage_class="standard"), cluster=cluster, run=run)
        assert volume.manifest["status"]["phase"] == "Bound"
        snap = run_snapshot(build_snapshot_spec("snap", pvc=volume.name), cluster=cluster, run=run)
        assert snap.manifest["status"]["readyToUse"] is True
        restored = run_volume(build_volume_spec("restored", storage_class="standard", data_source=snap.name),
                              cluster=cluster, run=run)
        assert restored.manifest["status"]["phase"] == "Bound"
        cluster.api.close()
    finally:
        PodWatch.close_all()


def test_resource_step_missing_permission_names_verb_and_resource(
    sa_rbac: Rbac, drill_namespace: str
) -> None:
    kubeconfig = sa_rbac.apply(without_verb(printed_rbac(drill_namespace, "--resource-steps"),
                                            "persistentvolumeclaims", "create"))
    cluster = connect(drill_namespace, kubeconfig=str(kubeconfig))
    with pytest.raises(Forbidden) as info:
        run_volume(build_volume_spec("data", "1Gi", storage_class="standard"), cluster=cluster,
                   run=RunInfo(run_id=str(uuid.uuid4()), run_name="sa"))
    assert str(info.value).startswith(
        f"forbidden: needs create on persistentvolumeclaims in namespace {drill_namespace} "
        f"for system:serviceaccount:{drill_namespace}:{SA}"
    )
    cluster.api.close()


def test_operator_missing_permission_names_verb_and_resource(
    sa_rbac: Rbac, drill_namespace: str, request: pytest.FixtureRequest
) -> None:
    kubeconfig = sa_rbac.apply(without_verb(printed_rbac(drill_namespace), "secrets", "create"))
    drill = sa_drill(kubeconfig, request, drill_namespace)
    try:
        with pytest.raises(Exception) as info:
            drill.submit(drill.step("sa-nosecret", HELLO))
        assert f"forbidden: needs create on secrets in namespace {drill_namespace}" in str(info.value).splitlines()[0]
        # the Secret is sent after submit returns, so submit's dry run of it is what refuses: nothing was created
        assert managed_objects(drill.api, drill_namespace) == {"jobs": [], "pods": [], "secrets": []}
    finally:
        PodWatch.close_all()


def test_operator_without_pod_list_fails_clearly_instead_of_hanging(
    sa_rbac: Rbac, drill_namespace: str, request: pytest.FixtureRequest
) -> None:
    text = printed_rbac(drill_namespace)
    for verb in ("get", "list", "watch"):
        text = without_verb(text, "pods", verb)
    kubeconfig = sa_rbac.apply(text)
    drill = sa_drill(kubeconfig, request, drill_namespace)
    try:
        step = drill.submit(drill.step("sa-blind", HELLO))
        with pytest.raises(Exception, match="forbidden: needs list on pods"):
            drill.wait(step, 60)
    finally:
        PodWatch.close_all()


# ------------------------------------------------------------ PodSecurity
def refusal(exc: BaseException) -> str:
    """The API server's words for a refused request: its Status.message (raw ApiException), or the
    operator's own error text if it translates the refusal."""
    if isinstance(exc, ApiException):
        assert exc.status == 403, exc
        return json.loads(exc.body)["message"]
    return str(exc)


@pytest.fixture
def restricted_namespace(api_client: client.ApiClient) -> Iterator[str]:
    name = make_namespace(api_client, "d-restricted", {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    })
    yield name
    delete_namespace(api_client, name)


@pytest.fixture
def rdrill(local_cluster: Any, restricted_namespace: str, request: pytest.FixtureRequest) -> Iterator[Drill]:
    yield sa_drill(local_cluster.kubeconfig, request, restricted_namespace)
    PodWatch.close_all()


def test_restricted_namespace_accepts_pods_that_opt_into_the_restricted_profile(rdrill: Drill) -> None:
    step = rdrill.submit(rdrill.step("restricted", HELLO, settings={"pod_settings": restricted_profile()}))
    assert rdrill.wait(step, 90) is ExecutionStatus.COMPLETED
    assert rdrill.console.lines(step.prefix)[0] == "hello from restricted"
    rdrill.cleanup(step)
    settle(rdrill.api, rdrill.namespace)


def test_restricted_profile_really_runs_the_step_as_non_root(rdrill: Drill) -> None:
    step = rdrill.submit(rdrill.step("nonroot", HELLO, settings={"pod_settings": restricted_profile()}))
    assert rdrill.wait(step, 90) is ExecutionStatus.COMPLETED
    assert rdrill.console.lines(step.prefix)[1] == "uid 1000"


def test_restricted_namespace_rejects_privileged_pod_clearly_and_leaves_nothing(rdrill: Drill) -> None:
    settings = {"privileged": True}
    with pytest.raises(Exception) as info:
        rdrill.submit(rdrill.step("privileged", HELLO, settings=settings))
    message = refusal(info.value)
    assert 'violates PodSecurity "restricted:latest"' in message
    assert 'privileged (container "main" must not set securityContext.privileged=true)' in message
    # the pod's dry run was refused: nothing was created
    assert managed_objects(rdrill.api, rdrill.namespace) == {"jobs": [], "pods": [], "secrets": []}


def test_restricted_namespace_rejection_of_default_settings_names_what_to_set(rdrill: Drill) -> None:
    with pytest.raises(Exception) as info:
        rdrill.submit(rdrill.step("plain", HELLO))
    message = refusal(info.value)
    for needed in ("allowPrivilegeEscalation != false", "unrestricted capabilities", "runAsNonRoot != true",
                   "seccompProfile"):
        assert needed in message, message
    assert managed_objects(rdrill.api, rdrill.namespace) == {"jobs": [], "pods": [], "secrets": []}


def test_the_zenml_users_oidc_linux_ids_are_the_steps_uid_and_gid(drill: Drill) -> None:
    """As in ZenML's operator: the claims win over the settings' security contexts."""
    from zenml.client import Client

    Client().active_user.oidc_claims = {"linux_uid": 1234, "linux_gid": 2345}
    code = "import os\nprint('ids', os.getuid(), os.getgid(), flush=True)\n"
    settings = {"pod_settings": {"security_context": {"runAsUser": 1000}}}
    step = drill.submit(drill.step("oidc", code, settings=settings))
    assert drill.wait(step, 90) is ExecutionStatus.COMPLETED
    assert drill.console.lines(step.prefix) == ["ids 1234 2345"]
    drill.cleanup(step)


TOKEN = "import os\nprint('token', os.path.exists('/var/run/secrets/kubernetes.io/serviceaccount/token'), flush=True)\n"


def test_a_step_under_the_default_service_account_gets_no_api_token_unless_it_asks(drill: Drill) -> None:
    """Least privilege: the pod's spec says no token, so the ServiceAccount admission plugin adds no
    token volume and the kubelet requests none; ``automount_service_account_token: true`` brings it back."""
    plain = drill.submit(drill.step("notoken", TOKEN))
    asked = drill.submit(drill.step("token", TOKEN, settings={"pod_settings": {"automount_service_account_token": True}}))
    assert drill.wait(plain, 90) is ExecutionStatus.COMPLETED and drill.wait(asked, 90) is ExecutionStatus.COMPLETED
    assert drill.console.lines(plain.prefix) == ["token False"]
    assert drill.console.lines(asked.prefix) == ["token True"]
    volumes = [v.name for v in drill.pod(plain).spec.volumes or []]
    assert not any(name.startswith("kube-api-access") for name in volumes), volumes

"""The two ways to reach the cluster besides a kubeconfig, each with a real ZenML run on the local cluster:

* in-cluster: the orchestrator itself runs in a pod, as a ServiceAccount bound to exactly what
  ``k8s-step-operator rbac`` prints, with the operator configured ``incluster: true``;
* a ZenML Kubernetes service connector (auth method ``token``: a TokenRequest token of that
  ServiceAccount, the cluster's CA certificate and server URL) linked to the operator, with no
  kubeconfig in reach; when the connector expires mid-step, the operator fetches it anew.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import signal
import time
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from k8s_step_operator.manifest import LABEL_MANAGED_BY, LABEL_STEP, MANAGED_BY

from ..polling import wait_until
from ..rbac_support import kubectl_apply, printed_rbac, service_account_token
from .conftest import OPERATOR, ZenMLProject, make_project
from .test_zenml_usage import pods, pods_after_deletion, secrets_of_operator

SA = "zenml-orchestrator"
CONNECTOR = "local-cluster"
# ZenML 0.98's connector verification calls ApiClient.call_api(response_type=...), a keyword the
# Kubernetes client we need no longer takes: the zenml CLI cannot verify a Kubernetes connector
# (the operator fixes that in its own process: kube.connection.fix_zenml_connector_verification).
NO_VERIFY = ("--no-verify",)
HELLO = ["[hello] hello line 0", "[hello] hello line 1", "[hello] hello line 2", "[hello] in-pod=True"]


def hello_lines(output: str) -> list[str]:
    """The hello step's own prints, as streamed to the orchestrator (ZenML's own lines left out)."""
    return [line for line in output.splitlines() if line.startswith(("[hello] hello line", "[hello] in-pod="))]


def assert_nothing_left(api: client.ApiClient, namespace: str, step: str) -> None:
    """The step's Job, pods and Secret are gone (deleted by the operator, then garbage collection)."""
    assert pods_after_deletion(api, namespace, f"{LABEL_STEP}={step}") == []
    assert secrets_of_operator(api, namespace) == []
    batch = client.BatchV1Api(api)
    assert batch.list_namespaced_job(namespace, label_selector=f"{LABEL_MANAGED_BY}={MANAGED_BY}").items == []


# ----------------------------------------------------------------------------------------- in-cluster
def orchestrator_pod(project: ZenMLProject, image: str) -> dict:
    """The pipeline's orchestrator as a pod: the project directory (with ZenML's config dir, its
    SQLite store and local artifact store) mounted at the same path, as ``local=True`` mounts it
    into step pods; no kubeconfig anywhere, only the ServiceAccount's token."""
    root = str(project.root)
    env = {
        "ZENML_CONFIG_PATH": project.env["ZENML_CONFIG_PATH"],
        "KUBECONFIG": "/nonexistent/kubeconfig",
        **{k: project.env[k] for k in ("ZENML_ANALYTICS_OPT_IN", "ZENML_LOGGING_COLORS_DISABLED",
                                        "ZENML_ENABLE_RICH_TRACEBACK", "K8SSO_OPERATOR", "K8SSO_NAMESPACE")},
        "K8SSO_TEST_IMAGE": image,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "orchestrator"},
        "spec": {
            "serviceAccountName": SA,
            "restartPolicy": "Never",
            "containers": [{
                "name": "orchestrator",
                "image": image,
                "command": ["python", "pipelines.py", "hello"],
                "workingDir": root,
                "env": [{"name": k, "value": v} for k, v in env.items()],
                "volumeMounts": [{"name": "project", "mountPath": root}],
            }],
            "volumes": [{"name": "project", "hostPath": {"path": root, "type": "Directory"}}],
        },
    }


def test_an_orchestrator_in_a_pod_runs_a_step_through_in_cluster_config(
    local_cluster, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    kubectl_apply(local_cluster.kubeconfig, printed_rbac(namespace, SA))
    project = make_project(tmp_path, namespace, None, "--incluster=True")
    image = project.env["K8SSO_TEST_IMAGE"]  # the step image holds python, zenml and this package
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, orchestrator_pod(project, image))

    def ended():
        pod = core.read_namespaced_pod("orchestrator", namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    pod = wait_until(ended, 300, "the orchestrator pod ending", interval=1)
    output = core.read_namespaced_pod_log("orchestrator", namespace, _preload_content=False).data.decode()
    assert pod.status.phase == "Succeeded", output
    assert "RUN-STATUS completed" in output, output
    # the step ran in a pod of its own, created by the orchestrator pod, and its log reached it
    assert hello_lines(output) == HELLO, output
    assert f"created job {namespace}/" in output, output
    assert_nothing_left(api_client, namespace, "hello")


# ---------------------------------------------------------------------------------- service connector
def register_connector(project: ZenMLProject, kubeconfig: Path, token: str) -> None:
    """A Kubernetes service connector with the ``token`` auth method, the CA and server of ``kubeconfig``."""
    cluster = yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]
    ca = base64.urlsafe_b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
    project.zenml(
        "service-connector", "register", CONNECTOR, "--type", "kubernetes", "--auth-method", "token",
        "--resource-type", "kubernetes-cluster", f"--server={cluster['server']}", f"--token={token}",
        f"--certificate_authority={ca}", "--cluster_name=local", *NO_VERIFY,
    )


def refused(server: str, ca: str, token: str) -> bool:
    """Whether the API server refuses ``token`` (401)."""
    cfg = client.Configuration()
    cfg.host, cfg.ssl_ca_cert = server, ca
    cfg.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(cfg) as api:
        try:
            client.CoreV1Api(api).list_namespaced_pod("default", limit=1)
        except ApiException as exc:
            return exc.status == 401
    return False


def test_a_service_connector_runs_the_step_without_a_kubeconfig_and_is_fetched_anew_when_expired(
    local_cluster, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    kubectl_apply(local_cluster.kubeconfig, printed_rbac(namespace, SA))
    core = client.CoreV1Api(api_client)
    for name in ("token-a", "token-b"):  # deleting the Secret a token is bound to revokes the token
        core.create_namespaced_secret(namespace, {"metadata": {"name": name}})
    token_a = service_account_token(api_client, namespace, SA, bound_secret="token-a")
    project = make_project(tmp_path, namespace, None)
    register_connector(project, local_cluster.kubeconfig, token_a)
    project.zenml("step-operator", "connect", OPERATOR, f"--connector={CONNECTOR}", *NO_VERIFY)
    no_kubeconfig = {"KUBECONFIG": str(tmp_path / "no-such-kubeconfig")}

    # 1. a run through the connector: nothing else could have let the operator in
    proc = project.pipeline("hello", env=no_kubeconfig)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "RUN-STATUS completed" in output, output
    assert hello_lines(output) == HELLO, output
    assert_nothing_left(api_client, namespace, "hello")

    # 2. the connector expires while the step runs; its token is rotated and the old one revoked
    #    meanwhile. The operator's later requests (the pod watch's reconnections, the Job's
    #    deletion) must go through the connector as fetched anew, with the new token.
    expires = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0) + dt.timedelta(seconds=90)
    project.zenml("service-connector", "update", CONNECTOR, f"--expires-at={expires:%Y-%m-%d %H:%M:%S}",
                  "--expires-skew-tolerance=1", *NO_VERIFY)
    flag = Path(project.env["ZENML_CONFIG_PATH"]) / "release-gated"  # the step pod sees the config dir
    orchestrator = project.start("gated", "--flag", str(flag), env=no_kubeconfig)
    try:
        def step_running() -> bool:
            assert orchestrator.poll() is None, orchestrator.stdout.read()
            return any(p.status.phase == "Running" for p in pods(api_client, namespace, f"{LABEL_STEP}=gated"))

        wait_until(step_running, 180, "the gated step's pod running", interval=1)
        token_b = service_account_token(api_client, namespace, SA, bound_secret="token-b")
        later = expires + dt.timedelta(hours=2)
        project.zenml("service-connector", "update", CONNECTOR, f"--token={token_b}",
                      f"--expires-at={later:%Y-%m-%d %H:%M:%S}", *NO_VERIFY)
        core.delete_namespaced_secret("token-a", namespace)
        revoked = time.monotonic()
        cluster = yaml.safe_load(Path(local_cluster.kubeconfig).read_text())["clusters"][0]["cluster"]
        wait_until(lambda: refused(cluster["server"], cluster["certificate-authority"], token_a), 30,
                 "the first token revoked")
        # release the step once the connector has expired and the pod watch (re-opened every 60 s:
        # rest.open_watch's server timeout) has reconnected at least once since the revocation
        until_expired = (expires - dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)).total_seconds()
        time.sleep(max(until_expired + 2, revoked + 65 - time.monotonic(), 0))
        flag.write_text("go")
        output, _ = orchestrator.communicate(timeout=120)
    finally:
        if orchestrator.poll() is None:
            os.killpg(orchestrator.pid, signal.SIGKILL)  # its own session (start_new_session)
            orchestrator.communicate(timeout=30)
    assert orchestrator.returncode == 0 and "RUN-STATUS completed" in output, output
    assert "[gated] gated step released" in output, output
    assert_nothing_left(api_client, namespace, "gated")

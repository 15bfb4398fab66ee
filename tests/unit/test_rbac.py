"""The permission table, its manifests and the `rbac` command (no cluster).

The last tests drive the step operator's own code paths (create, watch, logs,
cancel, clean-up) against a recording fake of ``kube.rest.request`` and check
that every request it makes is granted by the table, and nothing more.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from k8s_step_operator import rbac
from k8s_step_operator.cli import main

RESOURCE_KINDS = ["cronjobs.batch", "persistentvolumeclaims", "volumesnapshots.snapshot.storage.k8s.io"]


def _granted(perms: list[rbac.Permission]) -> dict[str, set[str]]:
    table: dict[str, set[str]] = {}
    for perm in perms:
        table.setdefault(perm.qualified, set()).update(perm.verbs)
    return table


# ------------------------------------------------------------- the table
def test_operator_permissions_are_exactly_what_it_needs() -> None:
    assert _granted(rbac.permissions()) == {
        "pods": {"create", "get", "list", "watch"},  # create: the dry run; the Job controller creates pods
        "pods/log": {"get"},
        "events": {"list", "watch"},  # the reasons in progress lines and failures
        "jobs.batch": {"create", "list", "delete"},  # no patch: the Job is created running
        "secrets": {"create", "delete"},
        "services": {"create"},
    }
    assert not any(p.cluster_scoped for p in rbac.permissions())
    assert all(p.why for p in rbac.permissions())


def test_secrets_are_never_readable() -> None:
    secrets = _granted(rbac.permissions())["secrets"]
    assert not secrets & {"get", "list", "watch", "update"}


def test_resource_steps_default_action_is_create_plus_wait_verbs() -> None:
    table = _granted(rbac.permissions(resource_steps=True, kinds=RESOURCE_KINDS))
    for kind in RESOURCE_KINDS:
        assert table[kind] == {"get", "list", "watch", "create"}
    assert table["storageclasses.storage.k8s.io"] == {"get"}


@pytest.mark.parametrize(
    ("action", "verbs"),
    [
        ("get", {"get", "list", "watch"}),
        ("create", {"get", "list", "watch", "create"}),
        ("apply", {"get", "list", "watch", "create", "patch"}),
        ("replace", {"get", "list", "watch", "update"}),
        ("patch", {"get", "list", "watch", "patch"}),
        ("delete", {"delete"}),
    ],
)
def test_each_action_adds_only_its_verbs(action: str, verbs: set[str]) -> None:
    table = _granted(rbac.resource_step_permissions(["jobs.batch"], [action]))
    logs = {"pods": {"list", "watch"}, "pods/log": {"get"}} if action in ("create", "apply") else {}
    assert table == {"jobs.batch": verbs, **logs}  # a created Job's pods' logs stream while the step waits


def test_only_jobs_and_pods_add_the_log_permissions() -> None:
    assert set(_granted(rbac.resource_step_permissions(["configmaps", "pods"], ["create"]))) == {
        "configmaps", "pods", "pods/log"}
    assert "pods/log" not in _granted(rbac.resource_step_permissions(["configmaps"], ["create", "apply"]))


def test_several_actions_union() -> None:
    table = _granted(rbac.resource_step_permissions(["configmaps"], ["create", "delete", "patch"]))
    assert table == {"configmaps": {"get", "list", "watch", "create", "patch", "delete"}}


def test_storageclass_read_only_for_claims_that_are_created() -> None:
    assert "storageclasses.storage.k8s.io" not in _granted(
        rbac.resource_step_permissions(["jobs.batch", "volumesnapshots.snapshot.storage.k8s.io"], ["create"])
    )
    assert "storageclasses.storage.k8s.io" not in _granted(
        rbac.resource_step_permissions(["persistentvolumeclaims"], ["delete"])
    )
    claims = rbac.resource_step_permissions(["pvc"], ["apply"])
    storage = [p for p in claims if p.resource == "storageclasses"]
    assert len(storage) == 1 and storage[0].cluster_scoped and storage[0].verbs == ("get",)


def test_parse_kind() -> None:
    assert rbac.parse_kind("jobs.batch") == rbac.Kind("jobs", "batch")
    assert rbac.parse_kind("persistentvolumeclaims") == rbac.Kind("persistentvolumeclaims", "")
    assert rbac.parse_kind("pvc") == rbac.Kind("persistentvolumeclaims", "")
    assert rbac.parse_kind("volumesnapshot").qualified == "volumesnapshots.snapshot.storage.k8s.io"
    assert rbac.parse_kind("Job") == rbac.Kind("jobs", "batch")  # well-known kinds are aliases
    assert rbac.parse_kind("persistentvolumes").cluster_scoped
    for bad in ("Widget", "jobs.Batch", "jobs..batch", "", "jobs/status"):
        with pytest.raises(ValueError, match="kind"):
            rbac.parse_kind(bad)
    with pytest.raises(ValueError, match="allowed: get, create, apply, delete, replace, patch"):  # the table's order
        rbac.resource_step_permissions(["jobs.batch"], ["scale"])


def test_required_checks_one_per_verb() -> None:
    checks = rbac.required_checks("ml", resource_steps=True, kinds=["pvc"], actions=["create"])
    rows = [(c.verb, c.target, c.namespace) for c in checks]
    assert rows == [
        ("create", "pods", "ml"),
        ("get", "pods", "ml"),
        ("list", "pods", "ml"),
        ("watch", "pods", "ml"),
        ("get", "pods/log", "ml"),
        ("list", "events", "ml"),
        ("watch", "events", "ml"),
        ("create", "jobs.batch", "ml"),
        ("list", "jobs.batch", "ml"),
        ("delete", "jobs.batch", "ml"),
        ("create", "secrets", "ml"),
        ("delete", "secrets", "ml"),
        ("create", "services", "ml"),
        ("get", "persistentvolumeclaims", "ml"),
        ("list", "persistentvolumeclaims", "ml"),
        ("watch", "persistentvolumeclaims", "ml"),
        ("create", "persistentvolumeclaims", "ml"),
        ("get", "storageclasses.storage.k8s.io", None),
    ]
    log = next(c for c in checks if c.subresource)
    assert log.resource_attributes() == {
        "verb": "get",
        "group": "",
        "resource": "pods",
        "subresource": "log",
        "namespace": "ml",
    }
    assert log.missing() == "forbidden: needs get on pods/log in ml"
    assert checks[-1].missing() == "forbidden: needs get on storageclasses.storage.k8s.io in the cluster scope"
    assert "namespace" not in checks[-1].resource_attributes()


# ------------------------------------------------------------- manifests
def test_manifests_operator_only() -> None:
    docs = rbac.manifests("ml", "runner")
    assert [d["kind"] for d in docs] == ["ServiceAccount", "Role", "RoleBinding"]
    role = docs[1]
    assert role["metadata"] == {"name": "runner", "namespace": "ml"}
    assert {r["resources"][0]: r["verbs"] for r in role["rules"]} == {
        "pods": ["get", "list", "watch", "create"],
        "pods/log": ["get"],
        "events": ["list", "watch"],
        "jobs": ["list", "create", "delete"],
        "secrets": ["create", "delete"],
        "services": ["create"],
    }
    binding = docs[2]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "runner"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "runner", "namespace": "ml"}]


def test_manifests_with_cluster_scoped_permission() -> None:
    perms = rbac.permissions(True, RESOURCE_KINDS, ["create", "delete"])
    docs = rbac.manifests("ml", "runner", perms)
    assert [d["kind"] for d in docs] == ["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"]
    role, cluster_role, cluster_binding = docs[1], docs[3], docs[4]
    assert all(r["resources"] != ["storageclasses"] for r in role["rules"])
    assert cluster_role["rules"] == [{"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["get"]}]
    assert cluster_role["metadata"]["name"] == "k8s-step-operator:ml:runner"
    assert cluster_binding["roleRef"]["name"] == "k8s-step-operator:ml:runner"
    assert cluster_binding["subjects"][0]["namespace"] == "ml"
    cron = next(r for r in role["rules"] if r["resources"] == ["cronjobs"])
    assert cron == {"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": ["get", "list", "watch", "create", "delete"]}


def test_render_yaml_matches_manifests_and_explains_rules() -> None:
    perms = rbac.permissions(True, RESOURCE_KINDS, ["create"])
    text = rbac.render_yaml("ml", "runner", perms)
    assert list(yaml.safe_load_all(text)) == rbac.manifests("ml", "runner", perms)
    assert "# pods/log\n#   get: stream the step's logs" in text
    assert "# secrets\n" in text and "never get/list" in text
    assert "# storageclasses.storage.k8s.io\n#   get: volume steps" in text
    assert "doctor --namespace ml --as system:serviceaccount:ml:runner" in text


# --------------------------------------------------------------- the CLI
def test_rbac_command() -> None:
    result = CliRunner().invoke(main, ["rbac", "--namespace", "ml", "--service-account", "runner"])
    assert result.exit_code == 0, result.output
    assert [d["kind"] for d in yaml.safe_load_all(result.stdout)] == ["ServiceAccount", "Role", "RoleBinding"]


def test_rbac_command_resource_steps() -> None:
    args = ["rbac", "-n", "ml"] + [x for k in RESOURCE_KINDS for x in ("--kind", k)] + ["--action", "delete"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in docs] == ["ServiceAccount", "Role", "RoleBinding"]  # delete reads no StorageClass
    rules = {(r["apiGroups"][0], r["resources"][0]): r["verbs"] for r in docs[1]["rules"]}
    assert rules[("batch", "cronjobs")] == ["delete"]
    assert rules[("batch", "jobs")] == ["list", "create", "delete"]  # the operator's own
    assert rules[("snapshot.storage.k8s.io", "volumesnapshots")] == ["delete"]

    with_claims = CliRunner().invoke(main, ["rbac", "-n", "ml", "--resource-steps"])
    kinds = [d["kind"] for d in yaml.safe_load_all(with_claims.stdout)]
    assert kinds == ["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"]


def test_rbac_command_rejects_bad_kind_and_action() -> None:
    bad_kind = CliRunner().invoke(main, ["rbac", "-n", "ml", "--kind", "Widget"])
    assert bad_kind.exit_code == 2 and "plural lower-case resource name" in bad_kind.stderr
    bad_action = CliRunner().invoke(main, ["rbac", "-n", "ml", "--action", "scale"])
    assert bad_action.exit_code == 2 and "scale" in bad_action.stderr


@pytest.mark.parametrize(
    "args",
    [[], ["render"], ["rbac"], ["doctor"], ["register"], ["local-cluster"], ["local-cluster", "up"],
     ["local-cluster", "down"], ["local-cluster", "status"]],
)
def test_help(args: list[str]) -> None:
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


# --------------------------------------------- request resolution (pure)
@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("POST", "/api/v1/namespaces/ml/pods", None, ("create", "", "pods", "", "ml")),
        ("GET", "/api/v1/namespaces/ml/pods", {"labelSelector": "a=b"}, ("list", "", "pods", "", "ml")),
        ("GET", "/api/v1/namespaces/ml/pods", {"watch": True}, ("watch", "", "pods", "", "ml")),
        ("GET", "/api/v1/namespaces/ml/pods/p/log", {"follow": True}, ("get", "", "pods", "log", "ml")),
        ("PATCH", "/api/v1/namespaces/ml/secrets/s", None, ("patch", "", "secrets", "", "ml")),
        ("DELETE", "/api/v1/namespaces/ml/secrets/s", None, ("delete", "", "secrets", "", "ml")),
        ("DELETE", "/api/v1/namespaces/ml/secrets", None, ("deletecollection", "", "secrets", "", "ml")),
        ("PUT", "/apis/batch/v1/namespaces/ml/jobs/j", None, ("update", "batch", "jobs", "", "ml")),
        ("GET", "/apis/storage.k8s.io/v1/storageclasses/standard", None, ("get", "storage.k8s.io", "storageclasses", "", None)),
        ("GET", "/api/v1/namespaces/ml", None, ("get", "", "namespaces", "", None)),
    ],
)
def test_request_access(method: str, path: str, query: Any, expected: tuple) -> None:
    assert rbac.request_access(method, path, query) == rbac.Access(*expected)


def test_allows_respects_namespace_and_scope() -> None:
    perms = rbac.permissions(True, ["pvc"], ["create"])
    assert rbac.allows(perms, rbac.Access("create", "", "pods", "", "ml"), "ml")
    assert not rbac.allows(perms, rbac.Access("create", "", "pods", "", "other"), "ml")
    assert not rbac.allows(perms, rbac.Access("get", "", "secrets", "", "ml"), "ml")
    assert rbac.allows(perms, rbac.Access("get", "storage.k8s.io", "storageclasses", "", None), "ml")
    assert not rbac.allows(perms, rbac.Access("list", "storage.k8s.io", "storageclasses", "", None), "ml")


# ----------------------------- the operator's real calls fit the table
class _Stream:
    """A streaming response that ends at once (watch or log follow)."""

    def stream(self, amt: Any = None, decode_content: bool = False) -> Any:
        return iter(())

    def release_conn(self) -> None:
        pass


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict]]:
    """Replace ``kube.rest.request`` with a recorder that answers like an API server."""
    from k8s_step_operator.kube import rest

    calls: list[tuple[str, str, dict]] = []
    lock = threading.Lock()

    def fake(api: Any, method: str, path: str, query: Any = None, body: Any = None, **kwargs: Any) -> Any:
        with lock:
            calls.append((method, path, dict(query or {})))
        if kwargs.get("stream"):
            return _Stream()
        if method == "GET":
            return {"items": [], "metadata": {"resourceVersion": "1"}}
        if method == "POST":
            return {**body, "metadata": {**body["metadata"], "uid": "u-1"}}
        return {}

    monkeypatch.setattr(rest, "request", fake)
    return calls


def test_operator_requests_are_all_granted(recorded: list[tuple[str, str, dict]], mocker: Any) -> None:
    from zenml.enums import StackComponentType

    from k8s_step_operator import manifest
    from k8s_step_operator.flavor import K8sStepOperatorConfig
    from k8s_step_operator.kube.logs import LogFollower
    from k8s_step_operator.kube.podwatch import PodWatch
    from k8s_step_operator.settings import K8sStepOperatorSettings
    from k8s_step_operator.step_operator import K8sStepOperator
    from k8s_step_operator.submission import Submission

    now = dt.datetime.now()
    operator = K8sStepOperator(
        name="k8s",
        id=uuid.uuid4(),
        config=K8sStepOperatorConfig(kubernetes_namespace="ml"),
        flavor="k8s",
        type=StackComponentType.STEP_OPERATOR,
        user=None,
        created=now,
        updated=now,
    )
    api = SimpleNamespace(configuration=SimpleNamespace(host="https://fake"))
    operator._api = api  # type: ignore[assignment]
    from k8s_step_operator import jobs

    settings = K8sStepOperatorSettings()
    identity = manifest.StepIdentity("run", "pipe", "train", str(uuid.uuid4()))
    pod = manifest.build_pod(settings, identity, "img", ["true"], "ml")
    secret = manifest.build_env_secret("train-env", "ml", identity, {"ZENML_STORE_URL": "x"}, owner="train")

    job = jobs.build_job(pod, "train", ttl_seconds_after_finished=60)
    operator._dry_run_pod(settings, pod, job)  # submit: admission's verdict, then the Job and its Secret
    created = operator.create_job(settings, job)
    batch = operator._batches.join(("ml", "run"), "train-env")
    mine = Submission("ml", "train", "train", settings, dt.datetime.now(dt.timezone.utc), batched=True)
    operator._linger(operator._batches.hand_in(batch, mine, created, secret))  # the sender thread
    two = settings.model_copy(update={"pod_count": 2})
    pair = operator.create_job(two, jobs.build_job(pod, "train", ttl_seconds_after_finished=60, pod_count=2))
    operator.create_dependents(two, pair)
    operator._release_env(mine, now=True)  # its pods have read it: the Secret goes
    watch = PodWatch(api, "ml")  # get_status / wait (the shared watch)
    assert watch.wait_synced(timeout=5)
    assert watch.want_events(synced_within=5)  # once a step is slow to start, or has failed
    deadline = time.monotonic() + 5
    while watch.watch_requests == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    watch.close()
    LogFollower(api, "ml", "train-x1", "main", lambda line: None).start().join(5)  # logs
    step_run = SimpleNamespace(id=identity.step_run_id, name="train")
    mocker.patch.object(K8sStepOperator, "_watch", return_value=watch)
    mocker.patch.object(K8sStepOperator, "_settings", return_value=settings)
    assert operator._locate(step_run) is None  # after a restart: LIST jobs by label (none here)
    now = dt.datetime.now(dt.timezone.utc)
    operator._known[identity.step_run_id] = Submission("ml", "train", "train", settings, now)
    operator.cancel(step_run)
    keep = settings.model_copy(update={"cleanup_policy": "keep"})
    operator._known[identity.step_run_id] = Submission("ml", "train", "train", keep, now)
    operator.cleanup_step_submission(step_run)

    perms = rbac.permissions()
    used = {rbac.request_access(m, p, q) for m, p, q in list(recorded)}
    denied = [a for a in used if not rbac.allows(perms, a, "ml")]
    assert denied == []
    used_pairs = {(a.verb, a.target) for a in used}
    granted_pairs = {(v, p.qualified) for p in perms for v in p.verbs}
    # Every granted verb is used, except `get pods`: granted on purpose (list already returns every pod).
    assert granted_pairs - used_pairs == {("get", "pods")}

"""``k8s-step-operator``: answer "what Pod will my settings make?", "what RBAC do I need?"
and "why can't it run?" before touching a cluster.

Commands: ``render``, ``rbac``, ``doctor``, ``local-cluster up|down|status`` and
``register``. ZenML and the Kubernetes client are imported inside the commands
that need them, so ``rbac`` and ``--help`` stay fast.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import click
import yaml

from . import rbac

if TYPE_CHECKING:
    from kubernetes import client as k8s

    from .flavor import K8sStepOperatorConfig
    from .settings import K8sStepOperatorSettings

FLAVOR_SOURCE = "k8s_step_operator.flavor.K8sStepOperatorFlavor"
SETTINGS_KEY = "step_operator"
DEFAULT_IMAGE = "<zenml-step-image>"
PLACEHOLDER_STEP_RUN_ID = "00000000-0000-0000-0000-000000000000"
ENTRYPOINT_CONFIG = "zenml.step_operators.step_operator_entrypoint_configuration.StepOperatorEntrypointConfiguration"
EXIT_INVALID = 2


class InvalidInput(click.ClickException):
    """Bad settings or files: exit code 2, message on stderr."""

    exit_code = EXIT_INVALID


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Helper for the k8s ZenML step operator: render, rbac, doctor, local-cluster, register."""


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


# ------------------------------------------------------------------ render
def _is_settings_key(key: Any) -> bool:
    """``step_operator``, ``step_operator.<flavor>`` or ``step_operator:<component>``."""
    return isinstance(key, str) and (
        key == SETTINGS_KEY or key.startswith(SETTINGS_KEY + ".") or key.startswith(SETTINGS_KEY + ":")
    )


def _applies(key: Any, component: Optional[str]) -> bool:
    """Whether a settings key selects this flavor (and the given component, if any)."""
    if not _is_settings_key(key):
        return False
    if key.startswith(SETTINGS_KEY + "."):
        return key == f"{SETTINGS_KEY}.k8s"
    if key.startswith(SETTINGS_KEY + ":") and component:
        return key == f"{SETTINGS_KEY}:{component}"
    return True


def _pick_settings(container: Any, where: str, component: Optional[str], notes: list[str]) -> dict:
    """The step operator settings in a ``settings:`` mapping, resolving keys like ZenML.

    ``step_operator``, ``step_operator.k8s`` and ``step_operator:<component>``
    apply; other flavors' or components' keys are ignored; two keys that apply
    are an error (as in ZenML).
    """
    if container is None:
        return {}
    if not isinstance(container, dict):
        raise InvalidInput(f"{where}: expected a mapping of settings, got {type(container).__name__}")
    applicable = []
    for key in container:
        if _applies(key, component):
            applicable.append(key)
        elif _is_settings_key(key) and key.startswith(SETTINGS_KEY + "."):
            notes.append(f"{where}.{key}: ignored (settings for another flavor; this one is `k8s`)")
        elif _is_settings_key(key):
            notes.append(f"{where}.{key}: ignored (settings for another component than `{component}`)")
    if len(applicable) > 1:
        raise InvalidInput(
            f"{where}: duplicate step operator settings under {' and '.join(applicable)}; "
            "ZenML rejects this too - keep one of them"
        )
    if not applicable:
        return {}
    value = container[applicable[0]]
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}.{applicable[0]}: expected a mapping, got {type(value).__name__}")
    return copy.deepcopy(value)


def extract_settings(
    document: Any, step: Optional[str], component: Optional[str], notes: list[str]
) -> tuple[list[tuple[str, dict]], Optional[str]]:
    """Settings layers ``[(where, settings dict), ...]`` (pipeline first) and the step name.

    Accepted shapes: bare settings (``pod_settings: ...``); a settings mapping
    (``step_operator: {...}``); a run config (``settings: step_operator: ...``
    and/or ``steps: <step>: settings: step_operator: ...``).
    """
    if document is None:
        return [], step
    if not isinstance(document, dict):
        raise InvalidInput(f"settings file: expected a mapping at the top, got {type(document).__name__}")
    if "settings" in document or "steps" in document:
        layers = [("settings", _pick_settings(document.get("settings"), "settings", component, notes))]
        steps = document.get("steps") or {}
        if not isinstance(steps, dict):
            raise InvalidInput("steps: expected a mapping of step name to step configuration")
        with_settings = [
            name
            for name, cfg in steps.items()
            if isinstance(cfg, dict)
            and isinstance(cfg.get("settings"), dict)
            and any(_applies(k, component) for k in cfg["settings"])
        ]
        if step is None and len(with_settings) > 1:
            raise InvalidInput(
                f"steps {', '.join(with_settings)} have their own step operator settings; pick one with --step"
            )
        if step is None and with_settings:
            step = with_settings[0]
            notes.append(f"using the settings of step `{step}` (the only step with its own settings)")
        step_cfg = steps.get(step) if step else None
        if step and step_cfg is None and steps:
            notes.append(f"step `{step}` is not in the run config's steps; using the pipeline settings")
        if isinstance(step_cfg, dict):
            where = f"steps.{step}.settings"
            layers.append((where, _pick_settings(step_cfg.get("settings"), where, component, notes)))
            chosen = step_cfg.get(SETTINGS_KEY)
            if isinstance(chosen, str) and not component:
                notes.append(
                    f"steps.{step} runs on step operator `{chosen}`; pass --component {chosen} "
                    "to overlay its configuration"
                )
        return layers, step
    if any(_is_settings_key(k) for k in document):
        return [("settings", _pick_settings(document, "settings", component, notes))], step
    return [("settings file", copy.deepcopy(document))], step


def _validation_message(exc: Exception) -> str:
    """One line per pydantic error, each starting with the field path."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    lines = []
    for error in errors():
        msg = str(error.get("msg", ""))
        for prefix in ("Value error, ", "Assertion failed, "):
            if msg.startswith(prefix):
                msg = msg[len(prefix) :]
        loc = ".".join(str(part) for part in error.get("loc", ()))
        names_field = bool(loc) and msg.split(":", 1)[0].startswith(loc.split(".")[0])
        lines.append(msg if names_field or not loc else f"{loc}: {msg}")
    return "\n".join(lines)


def _validate_settings(data: dict, what: str) -> "K8sStepOperatorSettings":
    from pydantic import ValidationError

    from .settings import K8sStepOperatorSettings

    try:
        return K8sStepOperatorSettings.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(f"invalid {what}:\n{_validation_message(exc)}") from exc


def _component_config(name: str) -> "K8sStepOperatorConfig":
    """The registered step operator's configuration (via ZenML's Client)."""
    from pydantic import ValidationError
    from zenml.client import Client
    from zenml.enums import StackComponentType

    from .flavor import FLAVOR_NAME, K8sStepOperatorConfig

    try:
        model = Client().get_stack_component(StackComponentType.STEP_OPERATOR, name, allow_name_prefix_match=False)
    except KeyError as exc:
        raise click.ClickException(f"no step operator named `{name}` is registered in ZenML") from exc
    if model.flavor_name != FLAVOR_NAME:
        raise click.ClickException(
            f"step operator `{name}` has flavor `{model.flavor_name}`, not `{FLAVOR_NAME}`"
        )
    try:
        return K8sStepOperatorConfig.model_validate(model.configuration)
    except ValidationError as exc:
        raise InvalidInput(f"invalid configuration of `{name}`:\n{_validation_message(exc)}") from exc


def resolve_settings(
    layers: Sequence[tuple[str, dict]], config: Optional["K8sStepOperatorConfig"], notes: list[str]
) -> "K8sStepOperatorSettings":
    """The settings the operator would get, computed the way ZenML does.

    Each layer is validated on its own (errors name the layer and field) and
    unknown keys are dropped with a note. Then: the component's set settings
    fields, recursively updated by the pipeline layer, recursively updated by
    the step layer (``None`` ignored), and finally ``get_settings``' shallow
    overlay on the component's whole configuration.
    """
    from zenml.utils.dict_utils import recursive_update

    from .settings import K8sStepOperatorSettings

    merged: dict[str, Any] = {}
    if config is not None:
        fields = set(K8sStepOperatorSettings.model_fields)
        merged = config.model_dump(include=fields, exclude_unset=True, exclude_defaults=True)
    for index, (where, raw) in enumerate(layers):
        validated = _validate_settings(raw, f"step operator settings in {where}")
        extras = sorted(validated.model_extra or {})
        for key in extras:
            notes.append(f"{where}: `{key}` is not a step setting - ZenML drops it with only a warning")
        dump = validated.model_dump(exclude_unset=True, exclude=set(extras))
        merged = recursive_update(merged, dump, ignore_none=index > 0)
    if config is not None:
        merged = {**config.model_dump(exclude_unset=True), **merged}
    return _validate_settings(merged, "settings after overlaying the component configuration")


def _render_header(pod: dict, step: str, pipeline: str, component: Optional[str]) -> str:
    name = pod["metadata"]["name"]
    source = f" overlaid on component `{component}`" if component else ""
    return "\n".join(
        [
            f"# Pod for step `{step}` of pipeline `{pipeline}`{source}, rendered without contacting a cluster.",
            "# Placeholders: the image, the snapshot id, the run name and the step run id (the pod name",
            "# ends in a hash of the real step run id).",
            "# ZenML's environment (store credentials and secret values) is NOT in the pod: it goes into the",
            f"# per-step Secret `{name}-env`, created before the pod, owned by it, and read through envFrom.",
        ]
    )


@main.command()
@click.option(
    "--settings",
    "settings_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="YAML/JSON: step operator settings, a settings mapping (step_operator: ...) or a run config.",
)
@click.option("--component", help="Overlay the settings on this registered step operator's configuration.")
@click.option("--step", help="Step name (also picks `steps: <name>:` in a run config).")
@click.option("--pipeline", default="my_pipeline", show_default=True, help="Pipeline name for labels and the pod name.")
@click.option("--image", default=DEFAULT_IMAGE, show_default=True, help="Step image.")
@click.option("--namespace", help="Namespace (default: settings, then component, then `zenml`).")
def render(
    settings_file: str,
    component: Optional[str],
    step: Optional[str],
    pipeline: str,
    image: str,
    namespace: Optional[str],
) -> None:
    """Print the Pod YAML a step would get (no cluster contact)."""
    from .flavor import K8sStepOperatorConfig
    from .manifest import StepIdentity, build_pod
    from .names import pod_name

    try:
        document = yaml.safe_load(Path(settings_file).read_text())
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{settings_file}: not valid YAML/JSON: {exc}") from exc
    notes: list[str] = []
    layers, step = extract_settings(document, step, component, notes)
    config = _component_config(component) if component else None
    settings = resolve_settings(layers, config, notes)
    step_name = step or "my_step"
    ns = namespace or settings.kubernetes_namespace or (config or K8sStepOperatorConfig()).kubernetes_namespace
    identity = StepIdentity(
        run_name=f"{pipeline}-run",
        pipeline_name=pipeline,
        step_name=step_name,
        step_run_id=PLACEHOLDER_STEP_RUN_ID,
        run_id=PLACEHOLDER_STEP_RUN_ID,
    )
    command = [
        "python", "-m", "zenml.entrypoints.entrypoint",
        "--entrypoint_config_source", ENTRYPOINT_CONFIG,
        "--snapshot_id", "<snapshot-id>",
        "--step_name", step_name,
        "--step_run_id", PLACEHOLDER_STEP_RUN_ID,
    ]  # fmt: skip
    secret = pod_name(settings.job_name_prefix, pipeline, step_name, PLACEHOLDER_STEP_RUN_ID) + "-env"
    try:
        pod = build_pod(settings, identity, image, command, ns, secret)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    for note in notes:
        _echo_err(f"note: {note}")
    click.echo(_render_header(pod, step_name, pipeline, component))
    click.echo(yaml.safe_dump(pod, sort_keys=False, default_flow_style=False), nl=False)


# -------------------------------------------------------------------- rbac
def _resource_step_options(func: Any) -> Any:
    func = click.option(
        "--action",
        "actions",
        multiple=True,
        type=click.Choice(rbac.ACTIONS),
        help=f"Resource step action (repeatable; default: {', '.join(rbac.DEFAULT_ACTIONS)}).",
    )(func)
    func = click.option(
        "--kind",
        "kinds",
        multiple=True,
        help="resource[.group] the resource steps act on, e.g. jobs.batch (repeatable; default: "
        + ", ".join(rbac.DEFAULT_KINDS)
        + ").",
    )(func)
    return click.option(
        "--resource-steps",
        is_flag=True,
        help="Also grant what resource/volume/snapshot steps need (implied by --kind/--action).",
    )(func)


def _permissions(resource_steps: bool, kinds: Sequence[str], actions: Sequence[str]) -> list[rbac.Permission]:
    try:
        return rbac.permissions(resource_steps or bool(kinds) or bool(actions), list(kinds), list(actions))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--kind") from exc


@main.command("rbac")
@click.option("--namespace", "-n", required=True, help="Namespace the step pods run in.")
@click.option(
    "--service-account", default=rbac.DEFAULT_SERVICE_ACCOUNT, show_default=True, help="ServiceAccount to create."
)
@_resource_step_options
def rbac_command(
    namespace: str, service_account: str, resource_steps: bool, kinds: tuple[str, ...], actions: tuple[str, ...]
) -> None:
    """Print least-privilege ServiceAccount, Role and RoleBinding YAML (kubectl apply -f -)."""
    perms = _permissions(resource_steps, kinds, actions)
    click.echo(rbac.render_yaml(namespace, service_account, perms), nl=False)


# ------------------------------------------------------------------ doctor
class _Report:
    """Collects ✓/✗ lines; failures also go to stderr at the end."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
        try:
            "✓✗".encode(encoding)
            self.ok_mark, self.bad_mark = "✓", "✗"
        except (UnicodeEncodeError, LookupError):
            self.ok_mark, self.bad_mark = "OK", "XX"

    def ok(self, text: str) -> None:
        click.echo(f"{self.ok_mark} {text}")

    def warn(self, text: str) -> None:
        click.echo(f"! {text}")

    def bad(self, text: str, failure: Optional[str] = None) -> None:
        click.echo(f"{self.bad_mark} {text}")
        self.failures.append(failure or text)

    def finish(self) -> None:
        if self.failures:
            for line in self.failures:
                _echo_err(line)
            raise SystemExit(1)


def _load_api(
    kubeconfig: Optional[str], context: Optional[str], incluster: bool, connector: Any, report: _Report
) -> tuple["k8s.ApiClient", str]:
    """ApiClient plus a description of where it came from; exits 1 with a clear message if impossible."""
    from kubernetes import config as kconfig

    from .kube.connection import load_api_client

    if connector is not None or incluster:
        where = "service connector" if connector is not None else "in-cluster configuration"
        try:
            return load_api_client(incluster=incluster, connector=connector), where
        except Exception as exc:  # noqa: BLE001 - reported to the user
            report.bad(f"cannot load the {where}: {exc}")
            report.finish()
    path = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    if kubeconfig and not Path(kubeconfig).expanduser().exists():
        report.bad(f"kubeconfig {kubeconfig} does not exist")
        report.finish()
    try:
        contexts, active = kconfig.list_kube_config_contexts(
            config_file=str(Path(kubeconfig).expanduser()) if kubeconfig else None
        )
    except Exception as exc:  # noqa: BLE001 - missing/invalid file
        report.bad(f"cannot read kubeconfig {path}: {exc}")
        report.finish()
    names = [c["name"] for c in contexts or []]
    if context and context not in names:
        report.bad(
            f"context `{context}` does not exist in kubeconfig {path}; available: {', '.join(names) or 'none'}",
            f"error: context `{context}` not found in kubeconfig {path}",
        )
        report.finish()
    chosen = context or (active or {}).get("name")
    if not chosen:
        report.bad(f"kubeconfig {path} has no current-context; pass --context")
        report.finish()
    try:
        api = load_api_client(context=chosen, kubeconfig=str(Path(kubeconfig).expanduser()) if kubeconfig else None)
    except Exception as exc:  # noqa: BLE001 - reported to the user
        report.bad(f"cannot load context `{chosen}` from {path}: {exc}")
        report.finish()
    report.ok(f"kubeconfig {path}, context `{chosen}`")
    return api, f"context `{chosen}`"


def _component_connection(name: str) -> tuple["K8sStepOperatorConfig", Any]:
    """The component's configuration and its service connector (or None)."""
    from zenml.client import Client
    from zenml.enums import StackComponentType
    from zenml.stack import StackComponent

    config = _component_config(name)
    model = Client().get_stack_component(StackComponentType.STEP_OPERATOR, name, allow_name_prefix_match=False)
    if model.connector is None or config.incluster:
        return config, None
    try:
        return config, StackComponent.from_model(model).get_connector()
    except Exception as exc:  # noqa: BLE001 - reported to the user
        raise click.ClickException(f"cannot use the service connector of `{name}`: {exc}") from exc


def _api_error(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    body = getattr(exc, "body", None)
    if status:
        message = reason or ""
        try:
            import json

            message = json.loads(body).get("message", message) if body else message
        except (ValueError, AttributeError):
            pass
        return f"HTTP {status}: {message}"
    return f"{type(exc).__name__}: {exc}"


def _check_service_account(api: "k8s.ApiClient", user: str, report: _Report) -> None:
    """Impersonation works for accounts that do not exist: say so instead of a wall of ✗."""
    from kubernetes import client

    parts = user.split(":")
    if len(parts) != 4 or not parts[2] or not parts[3]:
        report.bad(f"--as {user}: expected system:serviceaccount:<namespace>:<name>")
        return
    ns, name = parts[2], parts[3]
    try:
        client.CoreV1Api(api).read_namespaced_service_account(name, ns, _request_timeout=15)
        report.ok(f"service account {ns}/{name} exists")
    except client.ApiException as exc:
        if exc.status == 404:
            report.bad(
                f"service account {ns}/{name} does not exist (create it with `k8s-step-operator rbac`)",
                f"error: service account {ns}/{name} does not exist",
            )
        else:
            report.warn(f"service account {ns}/{name}: cannot check ({_api_error(exc)})")


def run_access_reviews(api: "k8s.ApiClient", checks: Sequence[rbac.Check]) -> list[tuple[rbac.Check, bool, str]]:
    """One SelfSubjectAccessReview per check: (check, allowed, reason)."""
    from kubernetes import client

    authz = client.AuthorizationV1Api(api)
    results = []
    for check in checks:
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(**check.resource_attributes())
            )
        )
        status = authz.create_self_subject_access_review(review, _request_timeout=30).status
        results.append((check, bool(status.allowed), status.reason or status.evaluation_error or ""))
    return results


@main.command()
@click.option("--kubeconfig", help="kubeconfig file (default: component, $KUBECONFIG, ~/.kube/config).")
@click.option("--context", help="kubeconfig context (default: component, then current-context).")
@click.option("--namespace", "-n", help="Namespace of the step pods (default: component, then `zenml`).")
@click.option("--component", help="Take kubeconfig/context/namespace/connector from this registered step operator.")
@click.option(
    "--as",
    "as_user",
    help="Check the permissions of this user, e.g. system:serviceaccount:NS:NAME (by impersonation).",
)
@_resource_step_options
def doctor(
    kubeconfig: Optional[str],
    context: Optional[str],
    namespace: Optional[str],
    component: Optional[str],
    as_user: Optional[str],
    resource_steps: bool,
    kinds: tuple[str, ...],
    actions: tuple[str, ...],
) -> None:
    """Check connection, namespace and every needed permission; exit 1 naming what is missing.

    Permissions are checked with SelfSubjectAccessReviews. With --as the
    reviews are sent with an ``Impersonate-User`` header, so they answer for
    that user exactly as the API server sees it (a service account also gets
    its groups); this needs ``impersonate`` permission, which admins have.
    """
    from kubernetes import client

    report = _Report()
    incluster, connector = False, None
    if component:
        config, connector = _component_connection(component)
        kubeconfig = kubeconfig or config.kubeconfig
        context = context or config.kubernetes_context
        namespace = namespace or config.kubernetes_namespace
        incluster = config.incluster and not (kubeconfig or context)
        report.ok(f"component `{component}` (flavor k8s)")
    namespace = namespace or "zenml"
    try:
        checks = rbac.required_checks(namespace, resource_steps or bool(kinds) or bool(actions), kinds, actions)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--kind") from exc
    api, _ = _load_api(kubeconfig, context, incluster, connector, report)

    try:
        version = client.VersionApi(api).get_code(_request_timeout=15)
        report.ok(f"API server {api.configuration.host} (Kubernetes {version.git_version})")
    except Exception as exc:  # noqa: BLE001 - any transport/auth problem
        report.bad(f"cannot reach the API server at {api.configuration.host}: {_api_error(exc)}")
        report.finish()

    try:
        client.CoreV1Api(api).read_namespace(namespace, _request_timeout=15)
        report.ok(f"namespace {namespace} exists")
    except client.ApiException as exc:
        if exc.status == 404:
            report.bad(
                f"namespace {namespace} does not exist (kubectl create namespace {namespace})",
                f"error: namespace {namespace} does not exist",
            )
        elif exc.status == 403:
            report.warn(f"namespace {namespace}: not allowed to read namespaces, cannot tell whether it exists")
        else:
            report.bad(f"namespace {namespace}: {_api_error(exc)}")

    if as_user and as_user.startswith("system:serviceaccount:"):
        _check_service_account(api, as_user, report)
    if as_user:
        api.set_default_header("Impersonate-User", as_user)
    subject = as_user or "the current user"
    click.echo(f"Permissions of {subject} (namespace {namespace}):")
    try:
        results = run_access_reviews(api, checks)
    except client.ApiException as exc:
        hint = f" (impersonating {as_user} needs `impersonate` permission)" if as_user and exc.status == 403 else ""
        report.bad(f"cannot create SelfSubjectAccessReviews: {_api_error(exc)}{hint}")
        report.finish()
        return
    width = max(len(c.target) for c in checks)
    for check, allowed, reason in results:
        line = f"{check.verb:<7} {check.target:<{width}}  {check.why}"
        if allowed:
            report.ok(line)
        else:
            report.bad(line + (f" [{reason}]" if reason else ""), check.missing())
    if not report.failures:
        click.echo(f"All {len(checks)} permissions are granted; the step operator can run in {namespace}.")
    report.finish()


# ----------------------------------------------------------- local-cluster
@main.group("local-cluster")
def local_cluster() -> None:
    """Run a local control plane with process nodes in the background."""


def _root_option(func: Any) -> Any:
    return click.option(
        "--root",
        type=click.Path(file_okay=False),
        help="State directory of the cluster (default: <cache>/k8s-step-operator/local-cluster).",
    )(func)


@local_cluster.command("up")
@_root_option
@click.option("--timeout", default=240.0, show_default=True, help="Seconds to wait until the nodes are Ready.")
@click.option("--no-nodes", is_flag=True, help="Control plane only (enough for rbac/doctor; pods stay Pending).")
def local_cluster_up(root: Optional[str], timeout: float, no_nodes: bool) -> None:
    """Start the cluster in the background (or say it is already up) and print the kubeconfig."""
    from .localcluster import cli_state

    cdir = cli_state.ClusterDir.at(root)
    try:
        result = cli_state.up(cdir, timeout, nodes=not no_nodes)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    state = "already up" if result.already else "up"
    click.echo(f"local cluster is {state} (supervisor pid {result.pid}, {result.server or 'server unknown'})")
    click.echo(f"kubeconfig: {result.kubeconfig}")
    click.echo(f"export KUBECONFIG={result.kubeconfig}")


@local_cluster.command("down")
@_root_option
@click.option("--timeout", default=90.0, show_default=True, help="Seconds to wait for a clean stop.")
def local_cluster_down(root: Optional[str], timeout: float) -> None:
    """Stop the cluster and verify no process of it is left."""
    from .localcluster import cli_state

    cdir = cli_state.ClusterDir.at(root)
    was_running, leftovers = cli_state.down(cdir, timeout)
    if leftovers:
        for pid, cmd in leftovers:
            _echo_err(f"still running: pid {pid}: {cmd[:160]}")
        raise click.ClickException(f"{len(leftovers)} process(es) of the local cluster in {cdir.root} are left")
    click.echo("local cluster stopped" if was_running else f"local cluster in {cdir.root} is not running")


@local_cluster.command("status")
@_root_option
def local_cluster_status(root: Optional[str]) -> None:
    """Print components and nodes; exit 1 unless everything runs."""
    from .localcluster import cli_state

    cdir = cli_state.ClusterDir.at(root)
    found = cli_state.status(cdir)
    if found.state == "stopped":
        click.echo(f"local cluster in {cdir.root}: not running")
        for pid, cmd in found.leftovers:
            click.echo(f"  stray process pid {pid}: {cmd[:160]} (run `local-cluster down`)")
        raise SystemExit(1)
    if found.state == "starting":
        click.echo(f"local cluster in {cdir.root}: starting (supervisor pid {found.pid})")
        raise SystemExit(1)
    click.echo(f"local cluster in {cdir.root}: {found.state} (supervisor pid {found.pid}, {found.server})")
    click.echo(f"export KUBECONFIG={found.kubeconfig}")
    click.echo("components:")
    for name, info in found.components.items():
        click.echo(f"  {name:<24} {info.get('state', '?'):<12} pid {info.get('pid', '?')}")
    healthy = found.running
    try:
        nodes = _list_nodes(found.kubeconfig)
    except Exception as exc:  # noqa: BLE001 - reported
        click.echo(f"nodes: cannot list them: {_api_error(exc)}")
        raise SystemExit(1) from exc
    click.echo("nodes:" if nodes else "nodes: none (started with --no-nodes)")
    for name, ready, taints in nodes:
        healthy = healthy and ready
        click.echo(f"  {name:<24} {'Ready' if ready else 'NotReady':<12} {taints}")
    if not healthy:
        raise SystemExit(1)


def _list_nodes(kubeconfig: Optional[Path]) -> list[tuple[str, bool, str]]:
    """(name, Ready, taints) of every node."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        items = client.CoreV1Api(api).list_node(_request_timeout=15).items
    finally:
        api.close()
    rows = []
    for node in items:
        ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
        taints = ", ".join(f"{t.key}={t.value or ''}:{t.effect}" for t in node.spec.taints or [])
        rows.append((node.metadata.name, ready, taints))
    return rows


# ---------------------------------------------------------------- register
def _flavor_request() -> Any:
    """The flavor request with the clean dotted source, whatever ZenML's source root is."""
    from zenml.enums import StackComponentType
    from zenml.stack.flavor import validate_flavor_source
    from zenml.utils import source_utils

    import k8s_step_operator

    package_parent = str(Path(k8s_step_operator.__file__).resolve().parent.parent)
    previous = os.environ.get("ZENML_CUSTOM_SOURCE_ROOT")
    # An editable install under a `zenml init` folder would otherwise resolve to `src.k8s_step_operator...`.
    source_utils.set_custom_source_root(package_parent)
    try:
        _, flavor = validate_flavor_source(FLAVOR_SOURCE, StackComponentType.STEP_OPERATOR)
        request = flavor.to_model(integration="custom", is_custom=True)
    finally:
        source_utils.set_custom_source_root(previous)
    if request.source != FLAVOR_SOURCE:
        request = request.model_copy(update={"source": FLAVOR_SOURCE})
    return request


def register_flavor(client: Any) -> str:
    """Register the ``k8s`` flavor; skip if registered with our source, refuse if with another."""
    from zenml.enums import StackComponentType

    from .flavor import FLAVOR_NAME

    existing = client.list_flavors(name=FLAVOR_NAME, type=StackComponentType.STEP_OPERATOR.value, hydrate=True).items
    for flavor in existing:
        if flavor.source == FLAVOR_SOURCE:
            return f"flavor `{FLAVOR_NAME}` is already registered ({FLAVOR_SOURCE})"
        raise click.ClickException(
            f"flavor `{FLAVOR_NAME}` is already registered with source `{flavor.source}`, not `{FLAVOR_SOURCE}`"
            + (
                "; a `src.` prefix means it was registered from inside the repository and only imports there"
                if flavor.source.startswith("src.")
                else ""
            )
            + f". Delete it (`zenml step-operator flavor delete {FLAVOR_NAME}`, possible while no component "
            "uses it) and run `k8s-step-operator register` again."
        )
    created = client.zen_store.create_flavor(flavor=_flavor_request())
    return f"registered flavor `{created.name}` ({created.source})"


def register_component(client: Any, name: str, configuration: dict[str, Any]) -> str:
    """Create the step operator component, or update an existing ``k8s`` one."""
    from zenml.enums import StackComponentType

    from .flavor import FLAVOR_NAME

    found = client.list_stack_components(name=name, type=StackComponentType.STEP_OPERATOR).items
    if not found:
        client.create_stack_component(name, FLAVOR_NAME, StackComponentType.STEP_OPERATOR, configuration)
        return f"registered step operator `{name}` ({configuration})"
    current = found[0]
    if current.flavor_name != FLAVOR_NAME:
        raise click.ClickException(
            f"a step operator named `{name}` already exists with flavor `{current.flavor_name}`; choose another name"
        )
    if all(current.configuration.get(k) == v for k, v in configuration.items()):
        return f"step operator `{name}` is already registered with this configuration"
    client.update_stack_component(name, StackComponentType.STEP_OPERATOR, configuration=configuration)
    return f"updated step operator `{name}` ({configuration})"


def register_stack(client: Any, name: str, component: str) -> str:
    """Create (or update) a stack with the default orchestrator and artifact store plus the step operator."""
    from zenml.enums import StackComponentType as T

    try:
        stack = client.get_stack(name, allow_name_prefix_match=False)
    except KeyError:
        client.create_stack(
            name,
            components={
                T.ORCHESTRATOR: client.get_stack_component(T.ORCHESTRATOR, "default").id,
                T.ARTIFACT_STORE: client.get_stack_component(T.ARTIFACT_STORE, "default").id,
                T.STEP_OPERATOR: component,
            },
        )
        message = f"registered stack `{name}` (default orchestrator and artifact store, step operator `{component}`)"
    else:
        operators = stack.components.get(T.STEP_OPERATOR) or []
        if any(c.name == component for c in operators):
            message = f"stack `{name}` already has step operator `{component}`"
        else:
            client.update_stack(name, component_updates={T.STEP_OPERATOR: [component]})
            message = f"stack `{name}` now uses step operator `{component}`"
    client.activate_stack(name)
    return message + f"; `{name}` is the active stack"


@main.command()
@click.option("--component", help="Also register (or update) a step operator with this name.")
@click.option("--namespace", help="kubernetes_namespace of the component (required with --component).")
@click.option("--context", help="kubernetes_context of the component.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="kubeconfig of the component (made absolute).")
@click.option("--local", is_flag=True, help="The cluster's pods reach this machine's ZenML store (local cluster).")
@click.option("--stack", help="Also register a stack with the default orchestrator/artifact store and activate it.")
def register(
    component: Optional[str],
    namespace: Optional[str],
    context: Optional[str],
    kubeconfig: Optional[str],
    local: bool,
    stack: Optional[str],
) -> None:
    """Register the `k8s` flavor (as k8s_step_operator.flavor.K8sStepOperatorFlavor), a component, a stack."""
    if not component and (namespace or context or kubeconfig or local):
        raise click.UsageError("--namespace, --context, --kubeconfig and --local configure a component: add --component")
    if component and not namespace:
        raise click.UsageError("--component needs --namespace (the namespace of the step pods)")
    if stack and not component:
        raise click.UsageError("--stack needs --component (the step operator of the stack)")
    from zenml.client import Client

    client = Client()
    click.echo(register_flavor(client))
    if component:
        configuration: dict[str, Any] = {"kubernetes_namespace": namespace}
        if context:
            configuration["kubernetes_context"] = context
        if kubeconfig:
            configuration["kubeconfig"] = str(Path(kubeconfig).expanduser().resolve())
        if local:
            configuration["local"] = True
        click.echo(register_component(client, component, configuration))
    if stack and component:
        click.echo(register_stack(client, stack, component))


if __name__ == "__main__":  # python -m k8s_step_operator.cli
    main()

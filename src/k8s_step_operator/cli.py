"""``k8s-step-operator``: answer "what Pod will my settings make?", "what RBAC do I need?"
and "why can't it run?" before touching a cluster.

Commands: ``render``, ``rbac``, ``doctor``, ``local-cluster up|down|status`` and
``register``. This module holds the commands, their options and their printing;
the work is in :mod:`.settings_files` and :mod:`.pod_preview` (render),
:mod:`.rbac`, :mod:`.doctor`, :mod:`.registration` and, for ``local-cluster``, the
separate ``k8sso_localcluster`` package (installed from the checkout, not part of the product). ZenML and the Kubernetes client are imported inside the
commands that need them, so ``rbac`` and ``--help`` stay fast.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypeVar

import click
import yaml

from . import doctor, rbac
from .pod_preview import DEFAULT_IMAGE, DEFAULT_STEP, build_preview_pod, preview_header
from .registration import (
    RegistrationConflict,
    component_configuration,
    register_component,
    register_flavor,
    register_stack,
)
from .settings_files import ComponentError, InvalidSettings, load_settings
from .steps.actions import ACTIONS as RESOURCE_ACTIONS

EXIT_INVALID = 2
T = TypeVar("T")


class InvalidInput(click.ClickException):
    """Bad settings or files: exit code 2, message on stderr."""

    exit_code = EXIT_INVALID


class _Commands(click.Group):
    """Reports the helper modules' errors the click way: bad input exits 2, the others 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InvalidSettings as exc:
            raise InvalidInput(str(exc)) from exc
        except (ComponentError, RegistrationConflict) as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Helper for the k8s ZenML step operator: render, rbac, doctor, local-cluster, register."""


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


# ------------------------------------------------------------------ render
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
    notes: list[str] = []
    settings, config, step = load_settings(settings_file, step, component, notes)
    step_name = step or DEFAULT_STEP
    try:
        pod = build_preview_pod(settings, config, pipeline, step_name, image, namespace)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    for note in notes:
        _echo_err(f"note: {note}")
    click.echo(preview_header(pod, step_name, pipeline, component))
    click.echo(yaml.safe_dump(pod, sort_keys=False, default_flow_style=False), nl=False)


# -------------------------------------------------------------------- rbac
def _resource_step_options(func: Any) -> Any:
    func = click.option(
        "--action",
        "actions",
        multiple=True,
        type=click.Choice(tuple(RESOURCE_ACTIONS)),
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


def _for_resource_steps(
    build: Callable[[bool, list[str], list[str]], T], resource_steps: bool, kinds: Sequence[str], actions: Sequence[str]
) -> T:
    """``build(resource_steps, kinds, actions)``; --kind/--action imply --resource-steps, a bad one is --kind's error."""
    try:
        return build(resource_steps or bool(kinds) or bool(actions), list(kinds), list(actions))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--kind") from exc


@main.command("rbac")
@click.option("--namespace", "-n", required=True, help="Namespace the step pods run in.")
@click.option(
    "--service-account", default=rbac.DEFAULT_SERVICE_ACCOUNT, show_default=True, help="ServiceAccount to create."
)
@click.option("--workspaces", is_flag=True, help="Also grant what workspaces with a claim_template need (a claim per run).")
@_resource_step_options
def rbac_command(
    namespace: str, service_account: str, workspaces: bool, resource_steps: bool, kinds: tuple[str, ...],
    actions: tuple[str, ...],
) -> None:
    """Print least-privilege ServiceAccount, Role and RoleBinding YAML (kubectl apply -f -)."""
    perms = _for_resource_steps(functools.partial(rbac.permissions, workspaces=workspaces), resource_steps, kinds, actions)
    click.echo(rbac.render_yaml(namespace, service_account, perms), nl=False)


# ------------------------------------------------------------------ doctor
@main.command("doctor")
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
def doctor_command(
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
    report = doctor.Report(click.echo, getattr(sys.stdout, "encoding", None))
    try:
        target = doctor.Target(kubeconfig, context, namespace)
        if component:
            target = doctor.component_target(component, target, report)
        namespace = target.namespace or "zenml"
        checks = _for_resource_steps(functools.partial(rbac.required_checks, namespace), resource_steps, kinds, actions)
        api = doctor.load_api(target, report)
        doctor.check_server(api, report)
        doctor.check_namespace(api, namespace, report)
        if as_user:
            doctor.impersonate(api, as_user, report)
        click.echo(f"Permissions of {as_user or 'the current user'} (namespace {namespace}):")
        doctor.check_permissions(api, checks, as_user, report)
        if not report.failures:
            click.echo(f"All {len(checks)} permissions are granted; the step operator can run in {namespace}.")
        report.finish()
    except doctor.DoctorFailed as exc:
        for line in exc.failures:
            _echo_err(line)
        raise SystemExit(1) from None


# ----------------------------------------------------------- local-cluster
@main.group("local-cluster")
def local_cluster() -> None:
    """Run a local cluster (control plane and two real nodes) in the background."""


def _root_option(func: Any) -> Any:
    return click.option(
        "--root",
        type=click.Path(file_okay=False),
        help="State directory of the cluster (default: <cache>/k8s-step-operator/local-cluster).",
    )(func)


def _local_cluster_state() -> Any:
    """The local cluster's ``cli_state`` module; it lives in its own package, installed from the checkout."""
    try:
        from k8sso_localcluster import cli_state
    except ImportError as exc:
        raise click.ClickException(
            "the local cluster is not installed: it is a separate package in this project's checkout "
            "(pip install -e ./localcluster, or bash scripts/setup.sh)"
        ) from exc
    return cli_state


@local_cluster.command("up")
@_root_option
@click.option("--timeout", default=240.0, show_default=True, help="Seconds to wait until the nodes are Ready.")
@click.option("--no-nodes", is_flag=True, help="Control plane only (enough for rbac/doctor; pods stay Pending).")
def local_cluster_up(root: Optional[str], timeout: float, no_nodes: bool) -> None:
    """Start the cluster in the background (or say it is already up) and print the kubeconfig."""
    cli_state = _local_cluster_state()

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
    cli_state = _local_cluster_state()

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
    cli_state = _local_cluster_state()

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
        click.echo(f"nodes: cannot list them: {doctor.api_error(exc)}")
        raise SystemExit(1) from exc
    click.echo("nodes:" if nodes else "nodes: none (started with --no-nodes)")
    for name, ready, taints in nodes:
        healthy = healthy and ready
        click.echo(f"  {name:<24} {'Ready' if ready else 'NotReady':<12} {taints}")
    if not healthy:
        raise SystemExit(1)


def _list_nodes(kubeconfig: Optional[Path]) -> list[tuple[str, bool, str]]:
    """(name, Ready, taints) of every node."""
    from .kube.client import Client
    from .kube.connection import load_api_client

    api = load_api_client(kubeconfig=str(kubeconfig))
    try:
        items, _ = Client(api, policy=None).list("/api/v1/nodes")
    finally:
        api.close()
    rows = []
    for node in items:
        conditions = (node.get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        taints = ", ".join(
            f"{t.get('key')}={t.get('value') or ''}:{t.get('effect')}" for t in (node.get("spec") or {}).get("taints") or []
        )
        rows.append((node["metadata"]["name"], ready, taints))
    return rows


# ---------------------------------------------------------------- register
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
    if component and namespace:  # checked above: a component comes with its namespace
        configuration = component_configuration(namespace, context, kubeconfig, local)
        click.echo(register_component(client, component, configuration))
    if stack and component:
        click.echo(register_stack(client, stack, component))


if __name__ == "__main__":  # python -m k8s_step_operator.cli
    main()

"""Pure builders for the step Pod and its environment Secret (no API calls).

The pod is assembled in this order, later steps winning:

1. ``pod_settings.pod_template_file`` (a Pod or PodTemplate) as the base;
2. the generated pod (identity labels, main container, pod settings) merged
   onto it with :func:`k8s_step_operator.merge.deep_merge`;
   ``additional_pod_spec_args`` are applied to the generated spec the way
   ZenML does (lists extended, maps updated, other values replaced);
3. ``pod_settings.pod_spec_overrides`` deep-merged onto ``spec`` last;
4. every string equal to ``{{ image }}`` replaced by the step image.

ZenML's step environment (which contains secrets) never goes into the pod:
its values live in a Secret (:func:`build_env_secret`), each under a key of
the step's own, and the main container reads them by name
(:func:`read_env_from_secret`: ``env[].valueFrom.secretKeyRef``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from k8s_step_operator.merge import deep_merge
from k8s_step_operator.mounts import Mount
from k8s_step_operator.names import label_value, pod_name, zenml_label_value
from k8s_step_operator.settings import (
    LABEL_MANAGED_BY,
    LABEL_PIPELINE,
    LABEL_RUN,
    LABEL_RUN_ID,
    LABEL_STEP,
    LABEL_STEP_RUN_ID,
    MAIN_CONTAINER_NAME,
    RESERVED_ANNOTATION_PREFIX,
    SHM_MOUNT_PATH,
    SHM_VOLUME_NAME,
    K8sPodSettings,
    K8sStepOperatorSettings,
)
from k8s_step_operator.validation import (
    to_api_dict,
    validate_dns1123_label,
    validate_dns1123_subdomain,
)

MANAGED_BY = "k8s-step-operator"
# on what a run creates beyond its steps' Jobs (per-run claims, resource steps' objects): the run-end hook's selector
RUN_ID_LABEL = "k8s-step-operator.zenml.io/run-id"
# ZenML 0.98's annotations (zenml.integrations.kubernetes.constants)
ANNOTATION_ZENML_STEP_NAME = "zenml.io/step-name"
ANNOTATION_ZENML_STEP_OPERATOR = "zenml.io/step-operator"
ANNOTATION_ZENML_USER_ID = "zenml.io/workspace-user-id"

ANNOTATION_PREFIX = RESERVED_ANNOTATION_PREFIX
ANNOTATION_RUN = ANNOTATION_PREFIX + "run"
ANNOTATION_PIPELINE = ANNOTATION_PREFIX + "pipeline"
ANNOTATION_STEP = ANNOTATION_PREFIX + "step"
ANNOTATION_STEP_RUN_ID = ANNOTATION_PREFIX + "step-run-id"
ANNOTATION_RUN_ID = ANNOTATION_PREFIX + "run-id"

IMAGE_PLACEHOLDER = "{{ image }}"
TEMPLATE_FIELD = "pod_settings.pod_template_file"
_SECRET_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
_SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "managedFields",
    "selfLink",
    "generateName",
    "ownerReferences",
)


@dataclass(frozen=True)
class StepIdentity:
    """Who a pod belongs to: the ZenML run, pipeline and step run."""

    run_name: str
    pipeline_name: str
    step_name: str
    step_run_id: str
    run_id: str = ""
    project_id: str = ""


def identity_labels(identity: StepIdentity) -> dict[str, str]:
    """Operator labels for an identity (values sanitized, hashed if cut)."""
    labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_RUN: label_value(identity.run_name),
        LABEL_PIPELINE: label_value(identity.pipeline_name),
        LABEL_STEP: label_value(identity.step_name),
        LABEL_STEP_RUN_ID: label_value(identity.step_run_id),
    }
    if identity.run_id:
        labels[LABEL_RUN_ID] = label_value(identity.run_id)
    zenml = {
        "project_id": identity.project_id,
        "run_id": identity.run_id,
        "run_name": identity.run_name,
        "step_run_id": identity.step_run_id,
        "step_name": identity.step_name,
    }
    labels.update({key: zenml_label_value(value) for key, value in zenml.items() if value})
    return labels


def identity_annotations(identity: StepIdentity) -> dict[str, str]:
    """Operator annotations carrying the full, unshortened names."""
    annotations = {
        ANNOTATION_RUN: identity.run_name,
        ANNOTATION_PIPELINE: identity.pipeline_name,
        ANNOTATION_STEP: identity.step_name,
        ANNOTATION_STEP_RUN_ID: identity.step_run_id,
    }
    if identity.run_id:
        annotations[ANNOTATION_RUN_ID] = identity.run_id
    return annotations


def selector_for(identity: StepIdentity) -> str:
    """Label selector matching the operator's objects of one step run."""
    return (
        f"{LABEL_MANAGED_BY}={MANAGED_BY},"
        f"{LABEL_STEP_RUN_ID}={label_value(identity.step_run_id)}"
    )


def build_pod(
    settings: K8sStepOperatorSettings,
    identity: StepIdentity,
    image: str,
    command: list[str],
    namespace: str,
    service_account: Optional[str] = None,
    template: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """Builds the complete ``v1 Pod`` (camelCase API dict) for a step run.

    Args:
        settings: Resolved step operator settings.
        identity: The step run the pod runs.
        image: Step image.
        command: Full entrypoint command of the main container.
        namespace: Namespace of the pod.
        service_account: Service account; wins over
            ``settings.service_account_name`` when given.
        template: The content of ``pod_settings.pod_template_file`` (parsed:
            :func:`parse_pod_template`), read by the caller; required when
            that setting is given.

    Returns:
        The pod manifest.

    Raises:
        ValueError: If the pod template cannot be used, or the merged
            result lost the main container.
    """
    pod_settings = settings.pod_settings or K8sPodSettings()
    spec = _pod_spec(settings, pod_settings, image, command)
    account = service_account or settings.service_account_name
    if account:
        spec["serviceAccountName"] = account
    spec = apply_additional_pod_spec_args(
        spec, pod_settings.additional_pod_spec_args
    )
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(settings, pod_settings, identity, namespace),
        "spec": spec,
    }
    if pod_settings.pod_template_file:
        if template is None:
            raise ValueError(f"{TEMPLATE_FIELD}: {pod_settings.pod_template_file!r} was not read (pass its content)")
        pod = deep_merge(dict(template), pod)
    if pod_settings.pod_spec_overrides:
        pod = deep_merge(pod, {"spec": pod_settings.pod_spec_overrides})
    _no_default_token(pod["spec"])
    # substitute_image rebuilds every map and list, so the returned pod
    # shares no mutable state with the (frozen) settings.
    pod = substitute_image(pod, image)
    containers = pod["spec"].get("containers") or []
    if not any(c.get("name") == MAIN_CONTAINER_NAME for c in containers):
        raise ValueError(
            f"pod_settings: the merged pod has no {MAIN_CONTAINER_NAME!r} "
            "container; overrides must not replace the step container"
        )
    return pod


def _no_default_token(spec: dict[str, Any]) -> None:
    """A pod running as the namespace's ``default`` service account gets no API token unless a
    setting asks for one (least privilege; it also spares the kubelet a token request per pod).
    A named service account, from any setting, keeps the cluster's default: its token is mounted."""
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    if account == "default" and "automountServiceAccountToken" not in spec:
        spec["automountServiceAccountToken"] = False


def env_key(owner: str, name: str) -> str:
    """The Secret key of one variable of a step's environment: ``<owner>.<name>``, the step's Job name
    first, so that the steps of one burst can share a Secret without sharing a key."""
    return f"{owner}.{name}"


def build_env_secret(
    name: str,
    namespace: str,
    identity: StepIdentity,
    environment: Mapping[str, str],
    owner: str,
) -> dict[str, Any]:
    """Builds the ``v1 Secret`` (Opaque, ``stringData``, immutable: nothing changes it, so the
    kubelet reads it once instead of watching it) for the step env, each variable under
    :func:`env_key` (``owner``: the step's Job name).

    Raises:
        ValueError: If the name or an environment key is not valid for a
            Secret.
    """
    validate_dns1123_subdomain(name, "env secret name")
    for key in environment:
        if not isinstance(key, str) or not _SECRET_KEY_RE.match(env_key(owner, key)):
            raise ValueError(
                f"environment[{key!r}]: not a valid Secret key; allowed: "
                f"1-{252 - len(owner)} letters, digits, '-', '_' and '.'"
            )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": identity_labels(identity),
            "annotations": identity_annotations(identity),
        },
        "type": "Opaque",
        "immutable": True,
        "stringData": {env_key(owner, key): str(value) for key, value in environment.items()},
    }


def read_env_from_secret(pod: dict[str, Any], secret: str, owner: str, names: Sequence[str]) -> dict[str, Any]:
    """The main container reads each of ``names`` from its key (:func:`env_key`) of Secret ``secret``:
    the names are in the spec, the values only in the Secret. A variable the container sets itself
    (``pod_settings.env``, ``pipeline_env``) keeps its own value. Returns a new Pod dict."""

    def add(container: dict[str, Any]) -> dict[str, Any]:
        own = container.get("env") or []
        taken = {var.get("name") for var in own}
        refs = [
            {"name": n, "valueFrom": {"secretKeyRef": {"name": secret, "key": env_key(owner, n)}}}
            for n in names if n not in taken
        ]
        return {**container, "env": [*refs, *own]} if refs else container

    spec = dict(pod["spec"])
    spec["containers"] = [add(c) if c.get("name") == MAIN_CONTAINER_NAME else c for c in spec["containers"]]
    return {**pod, "spec": spec}


def env_secret_of(pod_spec: Mapping[str, Any], owner: str) -> Optional[str]:
    """The Secret the main container reads ZenML's environment from, found by ``owner``'s keys (a
    user's own ``secretKeyRef`` has other keys); None: no environment."""
    for container in pod_spec.get("containers") or ():
        if container.get("name") == MAIN_CONTAINER_NAME:
            for var in container.get("env") or ():
                ref = (var.get("valueFrom") or {}).get("secretKeyRef") or {}
                if str(ref.get("key", "")).startswith(f"{owner}."):
                    return str(ref.get("name"))
    return None


def retarget_env_secret(pod_spec: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """The spec with the main container's references to Secret ``old`` pointed at ``new`` (same keys)."""

    def point(var: dict[str, Any]) -> dict[str, Any]:
        ref = (var.get("valueFrom") or {}).get("secretKeyRef")
        if not ref or ref.get("name") != old:
            return var
        return {**var, "valueFrom": {**var["valueFrom"], "secretKeyRef": {**ref, "name": new}}}

    containers = [
        {**c, "env": [point(v) for v in c.get("env") or ()]} if c.get("name") == MAIN_CONTAINER_NAME else c
        for c in pod_spec.get("containers") or ()
    ]
    return {**pod_spec, "containers": containers}


def _metadata(
    settings: K8sStepOperatorSettings,
    pod_settings: K8sPodSettings,
    identity: StepIdentity,
    namespace: str,
) -> dict[str, Any]:
    validate_dns1123_label(namespace, "namespace")
    name = pod_name(
        settings.job_name_prefix,
        identity.pipeline_name,
        identity.step_name,
        identity.step_run_id,
    )
    return {
        "name": name,
        "namespace": namespace,
        "labels": {**pod_settings.labels, **identity_labels(identity)},
        "annotations": {
            **pod_settings.annotations,
            **identity_annotations(identity),
        },
    }


def _main_container(
    settings: K8sStepOperatorSettings,
    pod_settings: K8sPodSettings,
    image: str,
    command: list[str],
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": MAIN_CONTAINER_NAME,
        "image": image,
        "command": list(command),
    }
    if pod_settings.image_pull_policy:
        container["imagePullPolicy"] = pod_settings.image_pull_policy
    resources = with_default_memory_request(pod_settings.resources, settings.default_memory_request)
    if resources:
        container["resources"] = resources
    if pod_settings.env:
        container["env"] = pod_settings.env
    if pod_settings.env_from:
        container["envFrom"] = list(pod_settings.env_from)
    mounts = list(pod_settings.volume_mounts)
    if pod_settings.shm_size:
        mounts.append({"name": SHM_VOLUME_NAME, "mountPath": SHM_MOUNT_PATH})
    if mounts:
        container["volumeMounts"] = mounts
    security = dict(pod_settings.container_security_context)
    if settings.privileged:
        security["privileged"] = True
    if security:
        container["securityContext"] = security
    return container


def with_default_memory_request(resources: Mapping[str, Any], memory: Optional[str]) -> dict[str, Any]:
    """``resources`` with ``requests.memory = memory`` when the user asked for no memory at all.

    Like ZenML's 400Mi default, but a memory limit alone is left alone: the API
    server then defaults the request to the limit, which a larger default would break.
    """
    result = {key: dict(value) for key, value in resources.items()}
    if memory and "memory" not in result.get("requests", {}) and "memory" not in result.get("limits", {}):
        result.setdefault("requests", {})["memory"] = memory
    return result


def run_as(pod: dict[str, Any], uid: Any, gid: Any) -> dict[str, Any]:
    """The pod running as the user's OIDC Linux ids (claims ``linux_uid``/``linux_gid``), like ZenML.

    Positive integers only (others are ignored); they win over the pod's and every
    container's security context. Returns a new Pod dict.
    """
    ids = {
        key: value
        for key, value in (("runAsUser", uid), ("runAsGroup", gid))
        if isinstance(value, int) and not isinstance(value, bool) and value > 0
    }
    if not ids:
        return pod
    spec = dict(pod["spec"])
    spec["securityContext"] = {**(spec.get("securityContext") or {}), **ids}
    for key in ("containers", "initContainers"):
        if spec.get(key):
            spec[key] = [{**c, "securityContext": {**(c.get("securityContext") or {}), **ids}} for c in spec[key]]
    return {**pod, "spec": spec}


def _extra_container(
    container: dict[str, Any],
    pod_settings: K8sPodSettings,
    image: str,
    sidecar: bool,
) -> dict[str, Any]:
    """Init/sidecar container: default image, shared security context."""
    result = dict(container)
    if "image" not in result:
        result["image"] = image
        if pod_settings.image_pull_policy:
            result.setdefault("imagePullPolicy", pod_settings.image_pull_policy)
    if pod_settings.container_security_context:
        result["securityContext"] = {
            **pod_settings.container_security_context,
            **result.get("securityContext", {}),
        }
    if sidecar:
        result["restartPolicy"] = "Always"
    return result


def _pod_spec(
    settings: K8sStepOperatorSettings,
    pod_settings: K8sPodSettings,
    image: str,
    command: list[str],
) -> dict[str, Any]:
    ps = pod_settings
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": settings.delete_grace_period_seconds,
        "containers": [
            _main_container(settings, ps, image, command)
        ],
    }
    init = [_extra_container(c, ps, image, False) for c in ps.init_containers]
    init += [_extra_container(c, ps, image, True) for c in ps.sidecar_containers]
    volumes = list(ps.volumes)
    if ps.shm_size:
        volumes.append(
            {
                "name": SHM_VOLUME_NAME,
                "emptyDir": {"medium": "Memory", "sizeLimit": ps.shm_size},
            }
        )
    optional = {
        "initContainers": init,
        "nodeSelector": ps.node_selectors,
        "affinity": ps.affinity,
        "tolerations": ps.tolerations,
        "volumes": volumes,
        "hostIPC": ps.host_ipc or None,
        "schedulerName": ps.scheduler_name,
        "imagePullSecrets": [{"name": n} for n in ps.image_pull_secrets],
        "securityContext": ps.security_context,
        "priorityClassName": ps.priority_class_name,
        "runtimeClassName": ps.runtime_class_name,
        "automountServiceAccountToken": ps.automount_service_account_token,
        "activeDeadlineSeconds": settings.active_deadline_seconds,
    }
    spec.update(
        {key: value for key, value in optional.items() if value not in (None, {}, [])}
    )
    return spec


def apply_additional_pod_spec_args(
    spec: Mapping[str, Any], args: Mapping[str, Any]
) -> dict[str, Any]:
    """Applies ``additional_pod_spec_args`` with ZenML's rules.

    For each key: ``None`` is skipped; a list value extends an existing list;
    a map value updates an existing map (shallowly); anything else replaces.
    """
    result = dict(spec)
    for key, value in args.items():
        if value is None:
            continue
        existing = result.get(key)
        if isinstance(existing, list) and isinstance(value, list):
            result[key] = existing + list(value)
        elif isinstance(existing, dict) and isinstance(value, dict):
            result[key] = {**existing, **value}
        else:
            result[key] = value
    return result


def substitute_image(value: Any, image: str) -> Any:
    """Replaces every string equal to ``{{ image }}`` with ``image``."""
    if isinstance(value, str):
        return image if value == IMAGE_PLACEHOLDER else value
    if isinstance(value, Mapping):
        return {k: substitute_image(v, image) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_image(v, image) for v in value]
    return value


def parse_pod_template(text: str, where: str = TEMPLATE_FIELD) -> dict[str, Any]:
    """Parses a Pod, PodTemplate or bare pod template given as YAML text (the file's content:
    :func:`k8s_step_operator.settings_files.load_pod_template` reads it).

    Returns:
        ``{"metadata": ..., "spec": ...}`` in camelCase API form, without
        server-populated metadata and status.

    Raises:
        ValueError: If it is not exactly one YAML document, of another kind,
            or has unknown fields; ``where`` starts the message.
    """
    import yaml

    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        raise ValueError(f"{where}: invalid YAML: {err}") from err
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise ValueError(
            f"{where}: expected exactly one YAML mapping (a Pod or "
            f"PodTemplate), found {len(documents)} document(s)"
        )
    document = documents[0]
    kind = document.get("kind")
    try:
        if kind == "Pod":
            template = to_api_dict(document, "V1Pod", "Pod")
        elif kind == "PodTemplate":
            template = to_api_dict(document, "V1PodTemplate", "PodTemplate")
            template = template.get("template", {})
        elif kind is None:
            template = to_api_dict(document, "V1PodTemplateSpec", "template")
        else:
            raise ValueError(
                f"kind: {kind!r} is not allowed; allowed: Pod, PodTemplate"
            )
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err
    metadata = {
        key: value
        for key, value in template.get("metadata", {}).items()
        if key not in _SERVER_METADATA
    }
    return {"metadata": metadata, "spec": template.get("spec", {})}


def mount_host_paths(pod: dict[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """Mount host directories at the same paths in the main container (``local=True``: the pods
    share this machine, so ZenML's local store and artifact store are these directories)."""
    return mount_volumes(pod, [Mount(p, {"hostPath": {"path": p, "type": "Directory"}}, prefix="host") for p in paths])


def mount_volumes(pod: dict[str, Any], mounts: Sequence[Mount]) -> dict[str, Any]:
    """Add each mount's volume to the pod and its mount to the main container; returns a new Pod dict."""
    if not mounts:
        return pod
    added = [m.volume_mount() for m in mounts]
    containers = [
        {**c, "volumeMounts": [*(c.get("volumeMounts") or []), *added]} if c.get("name") == MAIN_CONTAINER_NAME else c
        for c in pod["spec"]["containers"]
    ]
    volumes = [*(pod["spec"].get("volumes") or []), *(m.volume() for m in mounts)]
    return {**pod, "spec": {**pod["spec"], "containers": containers, "volumes": volumes}}


def with_env(pod: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Every container (init and sidecar ones too) gets ``env``; a variable it sets itself wins.
    Returns a new Pod dict."""
    if not env:
        return pod

    def add(container: dict[str, Any]) -> dict[str, Any]:
        own = container.get("env") or []
        names = {var.get("name") for var in own}
        extra = [{"name": k, "value": v} for k, v in env.items() if k not in names]
        return {**container, "env": [*extra, *own]}

    spec = dict(pod["spec"])
    for key in ("initContainers", "containers"):
        if spec.get(key):
            spec[key] = [add(c) for c in spec[key]]
    return {**pod, "spec": spec}

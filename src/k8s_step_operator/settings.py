"""Settings of the k8s step operator (a superset of ZenML's Kubernetes ones).

Every field of ZenML 0.98's ``KubernetesPodSettings`` and
``KubernetesStepOperatorSettings`` exists here with the same name and
meaning, so settings written for ZenML's operator work after changing only
the import. Kubernetes objects may be given as kubernetes-client model
objects or as dicts with camelCase *or* snake_case keys; they are stored as
camelCase API dicts. Invalid input fails at construction time with a
message naming the field path and what is allowed.
"""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any, ClassVar, Dict, List, Literal, Mapping, NamedTuple, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    field_validator,
    model_validator,
)
from zenml.config.base_settings import BaseSettings
from zenml.logger import get_logger

from k8s_step_operator.mounts import normalize_pvolume, normalize_workspace, workspace_problems
from k8s_step_operator.validation import (
    entry_path,
    field_path,
    is_model_object,
    item_path,
    parse_quantity,
    quantity_sign,
    sanitize,
    to_api_dict,
    validate_annotations,
    validate_choice,
    validate_dns1123_label,
    validate_dns1123_subdomain,
    validate_label_value,
    validate_labels,
    validate_quantity,
)

logger = get_logger(__name__)

POD_SETTINGS = "pod_settings"
MAIN_CONTAINER_NAME = "main"
SHM_VOLUME_NAME = "k8s-step-operator-shm"
SHM_MOUNT_PATH = "/dev/shm"
IMAGE_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TOLERATION_OPERATORS = ("Equal", "Exists")
TOLERATION_EFFECTS = ("NoExecute", "NoSchedule", "PreferNoSchedule")
RESERVED_ANNOTATION_PREFIX = "k8s-step-operator.zenml.io/"
# The label keys the operator sets on a step's pods (manifest.py), reserved in pod_settings.labels
LABEL_RUN = "run"
LABEL_PIPELINE = "pipeline"
LABEL_STEP = "step"
LABEL_STEP_RUN_ID = "step-run-id"
LABEL_RUN_ID = "run-id"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
# ZenML 0.98's own step labels, so selectors written for its operator find our pods too
ZENML_LABEL_KEYS = ("project_id", "run_id", "run_name", "step_run_id", "step_name")
RESERVED_LABEL_KEYS = frozenset(
    {
        LABEL_RUN,
        LABEL_PIPELINE,
        LABEL_STEP,
        LABEL_STEP_RUN_ID,
        LABEL_RUN_ID,
        LABEL_MANAGED_BY,
        *ZENML_LABEL_KEYS,
    }
)
_ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
DEFAULT_FAIL_ON_CONTAINER_WAITING_REASONS = [
    "InvalidImageName",
    "ErrImagePull",
    "ImagePullBackOff",
    "CreateContainerConfigError",
]


def _p(name: str) -> str:
    return field_path(POD_SETTINGS, name)


def _unknown_field_error(path: str, key: str, allowed: list[str]) -> str:
    hint = difflib.get_close_matches(str(key), allowed, n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    return (
        f"{field_path(path, str(key))}: unknown field{suggestion}; allowed: "
        f"{', '.join(sorted(allowed))}"
    )


def _require(items: list[dict], path: str, keys: tuple[str, ...]) -> None:
    for index, item in enumerate(items):
        for key in keys:
            if key not in item:
                raise ValueError(
                    f"{field_path(item_path(path, index), key)}: required"
                )


def _unique_names(items: list[dict], path: str) -> None:
    seen: set[str] = set()
    for index, item in enumerate(items):
        name = item["name"]
        if name in seen:
            raise ValueError(
                f"{field_path(item_path(path, index), 'name')}: duplicate "
                f"name {name!r}; names must be unique"
            )
        seen.add(name)


def _containers(value: Any, path: str, sidecar: bool) -> list[dict]:
    containers = to_api_dict(value or [], "list[V1Container]", path)
    _require(containers, path, ("name",))
    for index, container in enumerate(containers):
        name_path = field_path(item_path(path, index), "name")
        validate_dns1123_label(container["name"], name_path)
        if container["name"] == MAIN_CONTAINER_NAME:
            raise ValueError(
                f"{name_path}: {MAIN_CONTAINER_NAME!r} is reserved for the "
                "step container; choose another name"
            )
        policy = container.get("restartPolicy")
        if sidecar and policy not in (None, "Always"):
            raise ValueError(
                f"{field_path(item_path(path, index), 'restartPolicy')}: "
                f"{policy!r} is not allowed for a sidecar; allowed: Always"
            )
    _unique_names(containers, path)
    return containers


def _stringify_quantities(value: Any) -> Any:
    """Turns numeric requests/limits (``{"cpu": 2}``) into strings."""
    if not isinstance(value, Mapping):
        return value
    result = dict(value)
    for kind in ("requests", "limits"):
        amounts = result.get(kind)
        if isinstance(amounts, Mapping):
            result[kind] = {
                name: str(amount)
                if isinstance(amount, (int, float))
                and not isinstance(amount, bool)
                else amount
                for name, amount in amounts.items()
            }
    return result


def _extended(name: str) -> bool:
    """An extended resource (``vendor.com/gpu``): whole units, never overcommitted."""
    domain, _, rest = name.partition("/")
    return bool(rest) and not (domain == "kubernetes.io" or domain.endswith(".kubernetes.io"))


def _extended_resource_problems(resources: Mapping[str, Any], path: str) -> List[str]:
    """Extended resources must be whole numbers, and a request needs an equal limit."""
    problems: List[str] = []
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for kind, amounts in (("requests", requests), ("limits", limits)):
        for name, amount in amounts.items():
            if _extended(name) and parse_quantity(str(amount)) % 1 != 0:
                problems.append(
                    f"{entry_path(f'{path}.{kind}', name)}: {amount!r} is fractional; "
                    "extended resources such as GPUs come in whole units"
                )
    for name, amount in requests.items():
        if not _extended(name):
            continue
        if name not in limits:
            problems.append(
                f"{entry_path(f'{path}.requests', name)}: a request for {name} needs a limit "
                f"(set {path}.limits[{name!r}] to {amount!r})"
            )
        elif parse_quantity(str(limits[name])) != parse_quantity(str(amount)):
            problems.append(
                f"{entry_path(f'{path}.requests', name)}: {amount!r} must equal its limit "
                f"{limits[name]!r} ({name} is not overcommitted)"
            )
    return problems


class K8sPodSettings(BaseSettings):
    """Pod settings: every ZenML ``KubernetesPodSettings`` field, plus extras.

    Unknown fields are rejected with the list of allowed ones.
    """

    model_config = ConfigDict(extra="forbid")
    # True in the class ZenML resolves step settings into: the preflight reports these rules with the step's name
    _DEFER_POD_RULES: ClassVar[bool] = False

    node_selectors: Dict[str, str] = Field(
        default={},
        description="Node labels the pod must match (`spec.nodeSelector`).",
    )
    affinity: Dict[str, Any] = Field(
        default={}, description="Pod affinity (a `V1Affinity`)."
    )
    tolerations: List[Dict[str, Any]] = Field(
        default=[], description="Pod tolerations (`V1Toleration` list)."
    )
    resources: Dict[str, Any] = Field(
        default={},
        description="Requests/limits of the step container "
        "(`V1ResourceRequirements`); quantities like `500m`, `4Gi`.",
    )
    annotations: Dict[str, str] = Field(
        default={}, description="Annotations added to the pod metadata."
    )
    volumes: List[Dict[str, Any]] = Field(
        default=[], description="Pod volumes (`V1Volume` list)."
    )
    volume_mounts: List[Dict[str, Any]] = Field(
        default=[],
        description="Volume mounts of the step container "
        "(`V1VolumeMount` list).",
    )
    host_ipc: bool = Field(
        default=False, description="Use the host's IPC namespace."
    )
    scheduler_name: Optional[str] = Field(
        default=None, description="Scheduler that places the pod."
    )
    image_pull_secrets: List[str] = Field(
        default=[],
        description="Names of secrets used to pull images.",
    )
    labels: Dict[str, str] = Field(
        default={},
        description="Labels added to the pod (the operator's own label keys "
        "are reserved).",
    )
    env: List[Dict[str, Any]] = Field(
        default=[],
        description="Extra environment variables of the step container "
        "(`V1EnvVar` list, or a `{NAME: value}` mapping).",
    )
    env_from: List[Dict[str, Any]] = Field(
        default=[],
        description="Extra `envFrom` sources of the step container "
        "(`V1EnvFromSource` list).",
    )
    container_security_context: Dict[str, Any] = Field(
        default={},
        description="Container security context (`V1SecurityContext`) "
        "applied to every container of the pod; a container's own "
        "securityContext wins.",
    )
    additional_pod_spec_args: Dict[str, Any] = Field(
        default={},
        description="Extra pod spec fields, applied like ZenML does: lists "
        "are extended, maps updated, other values replaced. The string "
        "`{{ image }}` is replaced by the step image.",
    )
    security_context: Dict[str, Any] = Field(
        default={},
        description="Pod-level security context (`V1PodSecurityContext`).",
    )
    priority_class_name: Optional[str] = Field(
        default=None, description="PriorityClass of the pod."
    )
    runtime_class_name: Optional[str] = Field(
        default=None, description="RuntimeClass of the pod (e.g. `nvidia`)."
    )
    image_pull_policy: Optional[
        Literal["Always", "IfNotPresent", "Never"]
    ] = Field(
        default=None,
        description="Pull policy of the step image (Always, IfNotPresent, "
        "Never); Kubernetes' default when unset.",
    )
    init_containers: List[Dict[str, Any]] = Field(
        default=[],
        description="Init containers (`V1Container` list) run before the "
        "step; a container without `image` uses the step image.",
    )
    sidecar_containers: List[Dict[str, Any]] = Field(
        default=[],
        description="Sidecars (`V1Container` list) running alongside the "
        "step, added as native sidecars (init containers with "
        "`restartPolicy: Always`, Kubernetes >= 1.29) after "
        "`init_containers`, so they stop when the step ends.",
    )
    shm_size: Optional[str] = Field(
        default=None,
        description="Size of a memory-backed emptyDir mounted at /dev/shm "
        "in the step container (e.g. `2Gi`).",
    )
    automount_service_account_token: Optional[bool] = Field(
        default=None,
        description="Whether to mount the service account's API token; unset: mounted only when the pod "
        "runs under a named service account (`service_account_name`, or a pod template or override naming "
        "one), not under the namespace's `default` one (least privilege).",
    )
    pod_spec_overrides: Dict[str, Any] = Field(
        default={},
        description="Raw pod spec fields deep-merged last onto the generated "
        "spec: maps merge recursively, lists of named items (containers, "
        "env, volumes) merge by `name`, other values replace, `None` "
        "removes a key.",
    )
    pod_template_file: Optional[str] = Field(
        default=None,
        description="Path of a YAML file holding a Pod or PodTemplate used "
        "as the base the generated pod is deep-merged onto (same rules as "
        "`pod_spec_overrides`). Read when the pod is built.",
    )

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_fields(cls, data: Any) -> Any:
        """Rejects unknown fields, naming them and the allowed ones."""
        if isinstance(data, Mapping):
            allowed = list(cls.model_fields)
            for key in data:
                if key not in cls.model_fields:
                    raise ValueError(
                        _unknown_field_error(POD_SETTINGS, key, allowed)
                    )
        return data

    @field_validator("node_selectors", mode="before")
    @classmethod
    def _node_selectors(cls, value: Any) -> Any:
        """Node selector keys/values must be valid label keys/values."""
        return validate_labels(value or {}, _p("node_selectors"))

    @field_validator("affinity", mode="before")
    @classmethod
    def _affinity(cls, value: Any) -> Any:
        """Normalizes a `V1Affinity`."""
        return to_api_dict(value or {}, "V1Affinity", _p("affinity"))

    @field_validator("tolerations", mode="before")
    @classmethod
    def _tolerations(cls, value: Any) -> Any:
        """Normalizes tolerations and checks operator and effect."""
        path = _p("tolerations")
        tolerations = to_api_dict(value or [], "list[V1Toleration]", path)
        for index, toleration in enumerate(tolerations):
            base = item_path(path, index)
            if "operator" in toleration:
                validate_choice(
                    toleration["operator"],
                    field_path(base, "operator"),
                    TOLERATION_OPERATORS,
                )
            if toleration.get("effect"):
                validate_choice(
                    toleration["effect"],
                    field_path(base, "effect"),
                    TOLERATION_EFFECTS,
                )
        return tolerations

    @field_validator("resources", mode="before")
    @classmethod
    def _resources(cls, value: Any) -> Any:
        """Normalizes resources and validates every quantity."""
        path = _p("resources")
        if is_model_object(value):
            value = sanitize(value)
        resources = to_api_dict(
            _stringify_quantities(value or {}), "V1ResourceRequirements", path
        )
        for kind in ("requests", "limits"):
            for name, amount in resources.get(kind, {}).items():
                validate_quantity(amount, entry_path(f"{path}.{kind}", name))
        requests = resources.get("requests", {})
        for name, limit in resources.get("limits", {}).items():
            if name in requests and parse_quantity(
                requests[name]
            ) > parse_quantity(limit):
                raise ValueError(
                    f"{entry_path(path + '.requests', name)}: "
                    f"{requests[name]!r} exceeds the limit {limit!r}; a "
                    "request must be <= its limit"
                )
        return resources

    @field_validator("annotations", mode="before")
    @classmethod
    def _annotations(cls, value: Any) -> Any:
        """Validates annotation keys; the operator's prefix is reserved."""
        path = _p("annotations")
        annotations = validate_annotations(value or {}, path)
        for key in annotations:
            if key.startswith(RESERVED_ANNOTATION_PREFIX):
                raise ValueError(
                    f"{entry_path(path, key)}: keys starting with "
                    f"{RESERVED_ANNOTATION_PREFIX!r} are reserved for the "
                    "operator"
                )
        return annotations

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        """Validates labels; the operator's own label keys are reserved."""
        path = _p("labels")
        labels = validate_labels(value or {}, path)
        for key in labels:
            if key in RESERVED_LABEL_KEYS:
                raise ValueError(
                    f"{entry_path(path, key)}: reserved for the operator; "
                    "any key except "
                    f"{', '.join(sorted(RESERVED_LABEL_KEYS))} is allowed"
                )
        return labels

    @field_validator("volumes", mode="before")
    @classmethod
    def _volumes(cls, value: Any) -> Any:
        """Normalizes volumes; names must be unique DNS-1123 labels."""
        path = _p("volumes")
        volumes = to_api_dict(value or [], "list[V1Volume]", path)
        _require(volumes, path, ("name",))
        for index, volume in enumerate(volumes):
            validate_dns1123_label(
                volume["name"], field_path(item_path(path, index), "name")
            )
        _unique_names(volumes, path)
        return volumes

    @field_validator("volume_mounts", mode="before")
    @classmethod
    def _volume_mounts(cls, value: Any) -> Any:
        """Normalizes volume mounts; `name` and `mountPath` are required."""
        path = _p("volume_mounts")
        mounts = to_api_dict(value or [], "list[V1VolumeMount]", path)
        _require(mounts, path, ("name", "mountPath"))
        return mounts

    @field_validator("image_pull_secrets", mode="before")
    @classmethod
    def _image_pull_secrets(cls, value: Any) -> Any:
        """Accepts names, `{"name": ...}` dicts or `V1LocalObjectReference`."""
        path = _p("image_pull_secrets")
        if not isinstance(value, (list, tuple)):
            if value is None:
                return []
            raise ValueError(f"{path}: expected a list of secret names")
        names = []
        for index, item in enumerate(value):
            item_field = item_path(path, index)
            if is_model_object(item) or isinstance(item, Mapping):
                item = to_api_dict(item, "V1LocalObjectReference", item_field)
                item = item.get("name")
            names.append(validate_dns1123_subdomain(item, item_field))
        return names

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        """Normalizes env vars (list, or a `{NAME: value}` mapping)."""
        path = _p("env")
        if isinstance(value, Mapping):
            value = [{"name": k, "value": v} for k, v in value.items()]
        env = to_api_dict(value or [], "list[V1EnvVar]", path)
        _require(env, path, ("name",))
        return env

    @field_validator("env_from", mode="before")
    @classmethod
    def _env_from(cls, value: Any) -> Any:
        """Normalizes `envFrom` sources."""
        return to_api_dict(
            value or [], "list[V1EnvFromSource]", _p("env_from")
        )

    @field_validator("container_security_context", mode="before")
    @classmethod
    def _container_security_context(cls, value: Any) -> Any:
        """Normalizes a `V1SecurityContext`."""
        return to_api_dict(
            value or {}, "V1SecurityContext", _p("container_security_context")
        )

    @field_validator("security_context", mode="before")
    @classmethod
    def _security_context(cls, value: Any) -> Any:
        """Normalizes a `V1PodSecurityContext`."""
        return to_api_dict(
            value or {}, "V1PodSecurityContext", _p("security_context")
        )

    @field_validator("additional_pod_spec_args", mode="before")
    @classmethod
    def _additional_pod_spec_args(cls, value: Any) -> Any:
        """Normalizes a partial `V1PodSpec` (snake_case or camelCase keys)."""
        return to_api_dict(
            value or {}, "V1PodSpec", _p("additional_pod_spec_args")
        )

    @field_validator("pod_spec_overrides", mode="before")
    @classmethod
    def _pod_spec_overrides(cls, value: Any) -> Any:
        """Normalizes a partial `V1PodSpec`; `None` values are kept."""
        return to_api_dict(
            value or {}, "V1PodSpec", _p("pod_spec_overrides"), keep_none=True
        )

    @field_validator("priority_class_name", "runtime_class_name", mode="before")
    @classmethod
    def _class_names(cls, value: Any, info: Any) -> Any:
        """Priority/runtime class names are DNS-1123 subdomains."""
        if value is None:
            return None
        return validate_dns1123_subdomain(value, _p(info.field_name))

    @field_validator("image_pull_policy", mode="before")
    @classmethod
    def _image_pull_policy(cls, value: Any) -> Any:
        """Only Always, IfNotPresent and Never are allowed."""
        if value is None:
            return None
        return validate_choice(
            value, _p("image_pull_policy"), IMAGE_PULL_POLICIES
        )

    @field_validator("init_containers", mode="before")
    @classmethod
    def _init_containers(cls, value: Any) -> Any:
        """Normalizes init containers; names are unique DNS-1123 labels."""
        return _containers(value, _p("init_containers"), sidecar=False)

    @field_validator("sidecar_containers", mode="before")
    @classmethod
    def _sidecar_containers(cls, value: Any) -> Any:
        """Normalizes sidecars; `restartPolicy` may only be Always."""
        return _containers(value, _p("sidecar_containers"), sidecar=True)

    @field_validator("shm_size", mode="before")
    @classmethod
    def _shm_size(cls, value: Any) -> Any:
        """`shm_size` must be a positive quantity."""
        if value is None:
            return None
        path = _p("shm_size")
        text = validate_quantity(value, path)
        if quantity_sign(text) == 0:
            raise ValueError(f"{path}: must be greater than 0 (e.g. 1Gi)")
        return text

    @field_validator("pod_template_file", mode="before")
    @classmethod
    def _pod_template_file(cls, value: Any) -> Any:
        """The template path must be a non-empty string."""
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ValueError(
                f"{_p('pod_template_file')}: expected a non-empty file path"
            )
        return value

    @model_validator(mode="after")
    def _check_cross_field(self) -> "K8sPodSettings":
        """Checks names shared between fields."""
        names = [c["name"] for c in self.init_containers]
        for index, container in enumerate(self.sidecar_containers):
            if container["name"] in names:
                raise ValueError(
                    f"{_p('sidecar_containers')}[{index}].name: "
                    f"{container['name']!r} is already used by an init "
                    "container; container names must be unique"
                )
        if self.shm_size:
            for index, volume in enumerate(self.volumes):
                if volume["name"] == SHM_VOLUME_NAME:
                    raise ValueError(
                        f"{_p('volumes')}[{index}].name: {SHM_VOLUME_NAME!r} "
                        "is reserved for the shm_size volume"
                    )
        problems = [] if self._DEFER_POD_RULES else self.pod_rule_problems()
        if problems:
            raise ValueError(problems[0])
        return self

    def pod_rule_problems(self) -> List[str]:
        """What the API server would refuse across fields, each as ``field: why``.

        A mount naming no volume, an extended resource (e.g. ``nvidia.com/gpu``)
        that is fractional or requested without an equal limit, an env var with
        both ``value`` and ``valueFrom``. Mount names are not checked against a
        ``pod_template_file`` (read later; the preflight dry run covers it).
        """
        problems: List[str] = []
        volumes = {v.get("name") for v in self.volumes}
        for extra in (self.additional_pod_spec_args, self.pod_spec_overrides):
            volumes.update(v.get("name") for v in (extra.get("volumes") or []) if isinstance(v, Mapping))
        if self.shm_size:
            volumes.add(SHM_VOLUME_NAME)
        main = {"volumeMounts": self.volume_mounts, "env": self.env, "resources": self.resources}
        containers = [(POD_SETTINGS, main)] + [
            (item_path(_p(kind), index), container)
            for kind in ("init_containers", "sidecar_containers")
            for index, container in enumerate(getattr(self, kind))
        ]
        for path, container in containers:
            own = path == POD_SETTINGS
            if not self.pod_template_file:
                key = _p("volume_mounts") if own else field_path(path, "volumeMounts")
                for index, mount in enumerate(container.get("volumeMounts") or []):
                    if mount.get("name") not in volumes:
                        known = ", ".join(sorted(str(v) for v in volumes)) or "none"
                        problems.append(
                            f"{field_path(item_path(key, index), 'name')}: no volume named "
                            f"{mount.get('name')!r} (volumes: {known})"
                        )
            key = _p("env") if own else field_path(path, "env")
            for index, var in enumerate(container.get("env") or []):
                if var.get("value") and var.get("valueFrom"):
                    problems.append(
                        f"{item_path(key, index)}: {var.get('name')!r} sets both value and valueFrom; "
                        "set one of them"
                    )
            key = _p("resources") if own else field_path(path, "resources")
            problems.extend(_extended_resource_problems(container.get("resources") or {}, key))
        return problems


_DEPRECATED_HINTS = {
    "pod_startup_timeout": "use `schedule_timeout` and `startup_timeout` "
    "(seconds to be scheduled, then to start) instead",
    "pod_failure_max_retries": "use ZenML step retries instead",
    "pod_failure_retry_delay": "use ZenML step retries instead",
    "pod_failure_backoff": "use ZenML step retries instead",
}
_warned_deprecated: set[str] = set()
_NON_NEGATIVE_FIELDS = (
    "schedule_timeout",
    "startup_timeout",
    "delete_grace_period_seconds",
    "api_request_timeout",
    "ttl_seconds_after_finished",
    "active_deadline_seconds",
    "max_api_retries",
)


DEFAULT_TTL_SECONDS = 24 * 3600


class K8sStepOperatorSettings(BaseSettings):
    """Step operator settings: all of ZenML's, plus operator extras.

    Unknown keys are kept as extras (like every ZenML settings class) so
    that ZenML can warn about and drop them and so that component
    configuration values can be overlaid on these settings.
    """

    # True in the class ZenML resolves step settings into: a pipeline's workspace may get its source from
    # another level, so these rules wait for the merged settings (the preflight names the step)
    _DEFER_MERGED_RULES: ClassVar[bool] = False

    pod_settings: Optional[K8sPodSettings] = Field(
        default=None,
        description="Pod configuration of the step pod (see "
        "`pod_settings.*`).",
    )
    pod_count: PositiveInt = Field(
        default=1,
        description="Number of pods the step runs on (an Indexed Job and a "
        "headless Service); above 1 only for command steps, as in ZenML.",
    )
    service_account_name: Optional[str] = Field(
        default=None,
        description="Service account of the step pod; the namespace "
        "default if unset.",
    )
    privileged: bool = Field(
        default=False,
        description="Run the step container privileged.",
    )
    job_name_prefix: Optional[str] = Field(
        default=None,
        description="Prefix of the pod name.",
    )
    ttl_seconds_after_finished: Optional[NonNegativeInt] = Field(
        default=DEFAULT_TTL_SECONDS,
        description="Seconds after a step's Job finished before the cluster "
        "deletes it with its pods and Secret (kept failed pods, and "
        "everything when the orchestrator died); None: never.",
    )
    default_memory_request: Optional[str] = Field(
        default="400Mi",
        description="Memory request added when the step sets no memory "
        "request or limit (ZenML's default); None turns it off.",
    )
    queue_name: Optional[str] = Field(
        default=None,
        description="Kueue LocalQueue: the Job gets the queue label and "
        "waits suspended until Kueue admits it.",
    )
    active_deadline_seconds: Optional[NonNegativeInt] = Field(
        default=None,
        description="Pod deadline in seconds (`activeDeadlineSeconds`, "
        ">= 1); the pod is killed and the step fails when it runs longer.",
    )
    fail_on_container_waiting_reasons: Optional[List[str]] = Field(
        default=list(DEFAULT_FAIL_ON_CONTAINER_WAITING_REASONS),
        description="Container waiting reasons that fail the step at once; "
        "a pull error the registry may mend (429, timeout, connection "
        "refused), and a configuration error the kubelet mends (its Secret "
        "or ConfigMap cache not synced yet; the step's own environment "
        "Secret not there yet) are retried within `startup_timeout` instead.",
    )
    api_request_timeout: Optional[PositiveInt] = Field(
        default=None,
        description="Timeout of Kubernetes API requests in seconds; 30 "
        "if unset.",
    )
    max_api_retries: NonNegativeInt = Field(
        default=3,
        description="Retries of failed Kubernetes API requests (0 disables).",
    )
    kubernetes_namespace: Optional[str] = Field(
        default=None,
        description="Namespace of the step pod; overrides the component's "
        "namespace for this step.",
    )
    schedule_timeout: float = Field(
        default=600.0,
        description="Seconds a step's pod may wait for a node (unschedulable, "
        "queued) before the step fails with the scheduler's reason.",
    )
    startup_timeout: float = Field(
        default=600.0,
        description="Seconds a scheduled pod may take to start its containers "
        "(image pulls, volume mounts; transient pull errors are retried "
        "meanwhile) before the step fails with the last event's reason.",
    )
    cleanup_policy: Literal["keep", "delete", "delete-succeeded"] = Field(
        default="delete-succeeded",
        description="What to do with the pod when the step ends: keep it, "
        "delete it, or delete it only when the step succeeded.",
    )
    delete_grace_period_seconds: NonNegativeInt = Field(
        default=30,
        description="Grace period (seconds) when the pod is deleted; also "
        "the pod's terminationGracePeriodSeconds.",
    )
    stream_logs: bool = Field(
        default=True,
        description="Stream the logs of every container of the step's "
        "pods (init containers and sidecars too) into the step logs.",
    )
    log_prefix: bool = Field(
        default=True,
        description="Prefix the step container's streamed lines with "
        "`[step]` (always `[step/rank]` for several pods; other containers' "
        "always `[step:container]`).",
    )
    preflight: bool = Field(
        default=True,
        description="At submission, have the API server dry-run every step's "
        "objects (validation, admission, namespace, service account, "
        "permissions) so that a run fails before its first step, naming the "
        "step and the setting.",
    )
    pvolumes: Dict[str, Union[str, Dict[str, Any]]] = Field(
        default_factory=dict,
        description="Volumes to mount, like KFP's `pvolumes`: mount path -> "
        "the name of a step input whose value is a PVC name (e.g. a volume "
        "step's `name` output, which also orders the steps), or a PVC name; "
        "or a mapping with one of `input` (a step input), `claim` (a PVC), "
        "`volume` (any volume source: `emptyDir`, `configMap`, `secret`, ...) "
        "and optionally `sub_path`, `read_only`.",
    )
    workspaces: Dict[str, Dict[str, Any]] = Field(
        default_factory=dict,
        description="Volumes mounted into every step (KFP-Tekton's pipeline "
        "workspaces; set them at pipeline level): name -> one of `claim` (a "
        "PVC), `volume` (any volume source) or `claim_template` (a "
        "`PersistentVolumeClaimSpec`: one claim per run, deleted by "
        "`cleanup_run_resources`), with `mount_path` (default "
        "`/workspace/<name>`), `sub_path` (`{run}`, `{step}` expanded) and "
        "`read_only`; a step's own entry overrides fields by name.",
    )
    pipeline_env: Dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables of every container of every step "
        "(KFP-Tekton's pipeline env; set it at pipeline level); a step adds "
        "to it by name, and a container's own `env` wins.",
    )
    pod_startup_timeout: Optional[int] = Field(
        default=None,
        description="Deprecated and ignored; use `schedule_timeout` and "
        "`startup_timeout`.",
    )
    pod_failure_max_retries: Optional[int] = Field(
        default=None,
        description="Deprecated and ignored; use ZenML step retries.",
    )
    pod_failure_retry_delay: Optional[int] = Field(
        default=None,
        description="Deprecated and ignored; use ZenML step retries.",
    )
    pod_failure_backoff: Optional[float] = Field(
        default=None,
        description="Deprecated and ignored; use ZenML step retries.",
    )

    @model_validator(mode="before")
    @classmethod
    def _warn_deprecated(cls, data: Any) -> Any:
        """Logs (once per field) that a deprecated field is ignored."""
        if isinstance(data, Mapping):
            for name, hint in _DEPRECATED_HINTS.items():
                if data.get(name) is not None and name not in _warned_deprecated:
                    _warned_deprecated.add(name)
                    logger.warning(
                        "Setting `%s` is deprecated and ignored by "
                        "k8s-step-operator; %s.",
                        name,
                        hint,
                    )
        return data

    @field_validator("pod_settings", mode="before")
    @classmethod
    def _pod_settings(cls, value: Any) -> Any:
        """Accepts ZenML's own `KubernetesPodSettings` objects too."""
        target = cls.model_fields["pod_settings"].annotation
        if isinstance(value, BaseModel) and type(value) not in typing.get_args(target):
            return value.model_dump(exclude_unset=True)
        return value

    @field_validator(*_NON_NEGATIVE_FIELDS, mode="before")
    @classmethod
    def _non_negative(cls, value: Any, info: Any) -> Any:
        """Negative durations and counts are rejected, naming the field."""
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and value < 0
        ):
            raise ValueError(
                f"{info.field_name}: must be >= 0 (got {value})"
            )
        return value

    @field_validator("pvolumes", mode="before")
    @classmethod
    def _pvolumes(cls, value: Any) -> Any:
        """Mount paths are absolute; sources are input names, PVC names or mappings (see ``mounts``)."""
        if not isinstance(value, Mapping):
            return value
        return dict(normalize_pvolume(path, source) for path, source in value.items())

    @field_validator("workspaces", mode="before")
    @classmethod
    def _workspaces(cls, value: Any) -> Any:
        """Each workspace's fields checked; whether it has exactly one source waits for the merge."""
        if not isinstance(value, Mapping):
            return value
        return {name: normalize_workspace(name, entry) for name, entry in value.items()}

    @field_validator("pipeline_env", mode="before")
    @classmethod
    def _pipeline_env(cls, value: Any) -> Any:
        """Variable names as Kubernetes accepts them; values are text."""
        if not isinstance(value, Mapping):
            return value
        for name, text in value.items():
            if not isinstance(name, str) or not _ENV_NAME_RE.match(name):
                raise ValueError(
                    f"pipeline_env[{name!r}]: not a valid variable name; allowed: letters, digits, '_', '-', '.', "
                    "not starting with a digit"
                )
            if not isinstance(text, str):
                raise ValueError(f"pipeline_env[{name!r}]: the value must be a string, got {type(text).__name__}")
        return value

    @model_validator(mode="after")
    def _mounts_across_fields(self) -> "K8sStepOperatorSettings":
        """A workspace with no or two sources, two mounts at one path (a step's merged settings: the preflight)."""
        problems = [] if self._DEFER_MERGED_RULES else self.merged_problems()
        if problems:
            raise ValueError(problems[0])
        return self

    def merged_problems(self) -> List[str]:
        """Rules that hold only once pipeline and step settings are merged, each as ``field: why``."""
        return workspace_problems(self.workspaces, self.pvolumes)

    @field_validator("api_request_timeout", mode="before")
    @classmethod
    def _api_request_timeout(cls, value: Any) -> Any:
        """Floats are truncated to int, as ZenML does."""
        if isinstance(value, float):
            logger.warning(
                "Converted `api_request_timeout` from float to int: %s -> %s.",
                value,
                int(value),
            )
            return int(value)
        return value

    @field_validator("default_memory_request", "queue_name")
    @classmethod
    def _optional_text(cls, value: Optional[str], info: Any) -> Optional[str]:
        """A Kubernetes quantity (``default_memory_request``); a label value (``queue_name``, a LocalQueue)."""
        check = validate_quantity if info.field_name == "default_memory_request" else validate_label_value
        if value is not None:
            check(value, info.field_name)
        return value

    @field_validator("active_deadline_seconds")
    @classmethod
    def _deadline(cls, value: Optional[int]) -> Optional[int]:
        """A pod deadline must be at least one second."""
        if value == 0:
            raise ValueError(
                "active_deadline_seconds: 0 is not allowed for a pod; use "
                "1-2147483647 seconds, or leave it unset for no deadline"
            )
        if value is not None and value > 2**31 - 1:
            raise ValueError(
                "active_deadline_seconds: at most 2147483647 is allowed"
            )
        return value

    @field_validator("schedule_timeout", "startup_timeout")
    @classmethod
    def _budget(cls, value: float, info: Any) -> float:
        """A budget must be positive and finite."""
        if not 0 < value < float("inf"):
            raise ValueError(
                f"{info.field_name}: must be a positive number of seconds "
                f"(got {value})"
            )
        return value

    @field_validator("kubernetes_namespace", mode="before")
    @classmethod
    def _namespace(cls, value: Any) -> Any:
        """Namespaces are DNS-1123 labels."""
        if value is None:
            return None
        return validate_dns1123_label(value, "kubernetes_namespace")

    @field_validator("service_account_name", mode="before")
    @classmethod
    def _service_account(cls, value: Any) -> Any:
        """Service account names are DNS-1123 subdomains."""
        if value is None:
            return None
        return validate_dns1123_subdomain(value, "service_account_name")


class SettingsFieldRow(NamedTuple):
    """One row of the settings reference table."""

    field: str
    type: str
    default: str
    description: str


_BOUND_RE = re.compile(r"Annotated\[(\w+), (G[te])\(g[te]=([\d.]+)\)\]")
_BOUND_OPS = {"Ge": ">=", "Gt": ">"}


def _type_name(info: Any) -> str:
    annotation = info.annotation
    if isinstance(annotation, type) and not typing.get_args(annotation):
        text = annotation.__name__
    else:
        text = repr(annotation)
        for noise in ("typing.", "k8s_step_operator.settings."):
            text = text.replace(noise, "")
    text = _BOUND_RE.sub(
        lambda m: f"{m[1]} ({_BOUND_OPS[m[2]]} {m[3]})", text
    )
    for bound in info.metadata:
        for attr, op in (("ge", ">="), ("gt", ">")):
            if getattr(bound, attr, None) is not None:
                text += f" ({op} {getattr(bound, attr)})"
    return text


def _rows(model: type[BaseModel], prefix: str) -> list[SettingsFieldRow]:
    rows = []
    for name, info in model.model_fields.items():
        default = info.get_default(call_default_factory=True)
        rows.append(
            SettingsFieldRow(
                field=prefix + name,
                type=_type_name(info),
                default=repr(default),
                description=info.description or "",
            )
        )
    return rows


def describe_settings_fields() -> list[SettingsFieldRow]:
    """Rows (field, type, default, description) for the README reference.

    Step operator fields come first, then pod settings as `pod_settings.*`.
    """
    return _rows(K8sStepOperatorSettings, "") + _rows(
        K8sPodSettings, POD_SETTINGS + "."
    )


class StepPodSettings(K8sPodSettings):
    """Pod settings as ZenML's compiler builds them for a step: the cross-field pod rules are
    left to the preflight at submission, whose error names the step (ZenML's compiler would
    report them without it)."""

    _DEFER_POD_RULES: ClassVar[bool] = True


class StepSettings(K8sStepOperatorSettings):
    """The settings class ZenML resolves each step's settings into (see ``StepPodSettings``)."""

    _DEFER_MERGED_RULES: ClassVar[bool] = True

    pod_settings: Optional[StepPodSettings] = Field(
        default=None, description=K8sStepOperatorSettings.model_fields["pod_settings"].description
    )


# ZenML's names, so that moving from its operator changes only the module in the import line.
KubernetesStepOperatorSettings = K8sStepOperatorSettings
KubernetesPodSettings = K8sPodSettings

"""Resource-step options: normalisation and validation (pure: no cluster access).

Everything a resource step is told is checked here, at pipeline definition
time, so that bad input fails before anything exists on the cluster. The
result is a :class:`ResourceSpec`, a JSON-safe value that travels to the step
run as the step's ``spec`` parameter and is executed by
:mod:`k8s_step_operator.steps.resource_runtime`.

``k8s_resource`` may be a dict, YAML/JSON text, a path to a YAML/JSON file, or
a kubernetes-client model object (``V1Job(...)``). With ``action="patch"`` and
``merge_strategy="json"`` it is a list of JSON-patch operations instead, and
the target is named with ``api_version``/``kind``/``resource_name``.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..manifest import LABEL_MANAGED_BY, MANAGED_BY, RUN_ID_LABEL  # noqa: F401 - RUN_ID_LABEL: for the runtime and clean-up
from ..validation import is_model_object, sanitize, validate_dns1123_label
from .actions import ACTIONS, option_error
from .conditions import ConditionError, parse_conditions
from .jsonpath import JsonPathError, validate_jsonpath
from .spec_codec import SpecCodec

__all__ = [
    "Action",
    "Cleanup",
    "MergeStrategy",
    "ResourceSpec",
    "ResourceSpecError",
    "StepOptions",
    "RESOURCE_OPTIONS",
    "DELETE_OPTIONS",
    "build_resource_spec",
    "is_object_list",
    "load_resource",
    "read_resource",
    "normalize_owner",
    "validate_json_patch",
    "validate_namespace",
    "validate_object_name",
    "OUTPUT_NAME_RE",
    "RESERVED_OUTPUTS",
]

FIELD_MANAGER = "k8s-step-operator"
MANAGED_BY_LABEL = LABEL_MANAGED_BY
MANAGED_BY_VALUE = MANAGED_BY
CLEANUP_LABEL = "k8s-step-operator.zenml.io/cleanup"

OUTPUT_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")
RESERVED_OUTPUTS = ("name", "manifest")
_YAML_SUFFIXES = (".yaml", ".yml", ".json")
_JSON_PATCH_OPS = ("add", "remove", "replace", "move", "copy", "test")
_PROPAGATION = ("Background", "Foreground", "Orphan")


class ResourceSpecError(ValueError):
    """An option of a resource, volume or snapshot step is not valid."""


class Action(str, enum.Enum):
    """What a resource step does with its object (Argo's resource actions); the rules: :data:`.actions.ACTIONS`."""

    GET = "get"
    CREATE = "create"
    APPLY = "apply"
    DELETE = "delete"
    REPLACE = "replace"
    PATCH = "patch"


class MergeStrategy(str, enum.Enum):
    """How ``action="patch"`` merges: the three ``kubectl patch --type`` values."""

    STRATEGIC = "strategic"
    MERGE = "merge"
    JSON = "json"


class Cleanup(str, enum.Enum):
    """Whether an object a step created outlives the pipeline run.

    ``on-run-end`` deletes it when the run ends (success or failure) and
    ``on-success`` only when the run succeeds (kept for debugging otherwise);
    both need :func:`k8s_step_operator.steps.cleanup_run_resources` as the
    pipeline's ``on_success``/``on_failure`` hook. ``never`` keeps it.
    """

    NEVER = "never"
    ON_RUN_END = "on-run-end"
    ON_SUCCESS = "on-success"


def _choices(enum_type: type[enum.Enum]) -> str:
    return ", ".join(str(member.value) for member in enum_type)


def parse_choice(value: Any, enum_type: type[enum.Enum], field_name: str) -> Any:
    """Return the enum member for ``value`` or raise naming the field and the allowed values."""
    if isinstance(value, enum_type):
        return value
    for member in enum_type:
        if isinstance(value, str) and value.strip().lower() == member.value:
            return member
    raise ResourceSpecError(f"{field_name}: {value!r} is not allowed; allowed: {_choices(enum_type)}")


# --------------------------------------------------------------------------- #
# k8s_resource normalisation
# --------------------------------------------------------------------------- #


def _looks_like_path(text: str) -> bool:
    stripped = text.strip()
    if not stripped or "\n" in stripped:
        return False
    return stripped.lower().endswith(_YAML_SUFFIXES) and not stripped.startswith(("{", "["))


def _parse_text(text: str, field_name: str, origin: str) -> Any:
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise ResourceSpecError(f"{field_name}: {origin} is not valid YAML or JSON: {exc}") from None
    if not documents:
        raise ResourceSpecError(f"{field_name}: {origin} holds no object")
    return documents[0] if len(documents) == 1 else documents


def _json_safe(value: Any, field_name: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise ResourceSpecError(
            f"{field_name}: the object must be JSON data (dicts, lists, strings, numbers, booleans): {exc}"
        ) from None


def load_resource(value: Any, field_name: str = "k8s_resource", origin: str = "the text") -> Any:
    """Turn a dict, YAML/JSON text or client model into JSON data (pure: a file is read by
    :func:`read_resource`, where the step is defined).

    Returns a dict (an object) or a list (JSON-patch operations, or the objects of a
    multi-document YAML or of a list); raises
    :class:`ResourceSpecError` naming ``field_name`` otherwise. Text is parsed as YAML
    (JSON is YAML); ``origin`` names it in errors.
    """
    if value is None:
        raise ResourceSpecError(
            f"{field_name}: required; give a dict, YAML/JSON text, a .yaml/.json file path "
            "or a kubernetes-client model object"
        )
    if is_model_object(value):
        data = sanitize(value)
    elif isinstance(value, Path) or (isinstance(value, str) and _looks_like_path(value)):
        raise ResourceSpecError(
            f"{field_name}: {str(value).strip()!r} is a file path; read it with read_resource (the step factories do)"
        )
    elif isinstance(value, str):
        data = _parse_text(value, field_name, origin)
    elif isinstance(value, Mapping):
        data = copy.deepcopy(dict(value))
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        data = [sanitize(item) if is_model_object(item) else item for item in value]
    else:
        raise ResourceSpecError(
            f"{field_name}: got {type(value).__name__}; allowed: a dict, YAML/JSON text, a .yaml/.json "
            "file path or a kubernetes-client model object"
        )
    if not isinstance(data, (dict, list)):
        raise ResourceSpecError(f"{field_name}: expected an object (mapping), got {type(data).__name__} {data!r}")
    return _json_safe(data, field_name)


def read_resource(value: Any, field_name: str = "k8s_resource") -> Any:
    """:func:`load_resource`, reading ``value`` first when it is a file path: a :class:`pathlib.Path`,
    or one line ending in ``.yaml``, ``.yml`` or ``.json``. Called where a step is defined."""
    if isinstance(value, Path) or (isinstance(value, str) and _looks_like_path(value)):
        path = Path(str(value).strip()).expanduser()
        if not path.is_file():
            raise ResourceSpecError(f"{field_name}: file {str(path)!r} does not exist")
        return load_resource(path.read_text(), field_name, f"file {str(path)!r}")
    return load_resource(value, field_name)


# --------------------------------------------------------------------------- #
# Small validators
# --------------------------------------------------------------------------- #


def validate_object_name(name: Any, field_name: str) -> str:
    """Names valid for *some* kind: non-empty, no '/' or '%', not '.' or '..' (path-segment rule).

    Each kind's own rule (e.g. DNS-1123 subdomain for ConfigMaps) is enforced by the API server.
    """
    if not isinstance(name, str) or not name:
        raise ResourceSpecError(f"{field_name}: expected a non-empty string, got {name!r}")
    if name in (".", "..") or "/" in name or "%" in name or len(name) > 253:
        raise ResourceSpecError(
            f"{field_name}: {name!r} is not a valid object name; allowed: at most 253 characters, "
            "no '/' or '%', not '.' or '..' (most kinds need a DNS-1123 subdomain: lowercase "
            "letters, digits, '-' and '.')"
        )
    return name


def validate_namespace(value: Any, field_name: str) -> str:
    """A namespace name (DNS-1123 label); ResourceSpecError naming ``field_name`` otherwise."""
    try:
        return validate_dns1123_label(value, field_name)
    except ValueError as exc:
        raise ResourceSpecError(str(exc)) from None


def validate_api_version(value: Any, field_name: str) -> str:
    """``v1`` or ``<group>/<version>``."""
    if not isinstance(value, str) or not re.fullmatch(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?v[0-9]+[a-z0-9]*", value):
        raise ResourceSpecError(
            f"{field_name}: {value!r} is not an apiVersion; allowed: 'v1' for core kinds or "
            "'<group>/<version>' such as 'batch/v1'"
        )
    return value


def validate_kind(value: Any, field_name: str) -> str:
    """A CamelCase kind such as ``ConfigMap``."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", value):
        raise ResourceSpecError(f"{field_name}: {value!r} is not a kind; allowed: a name such as 'ConfigMap' or 'Job'")
    return value


def validate_json_patch(ops: Any, field_name: str = "k8s_resource") -> list[dict[str, Any]]:
    """Check a JSON-patch (RFC 6902) operation list."""
    if not isinstance(ops, list) or not ops:
        raise ResourceSpecError(
            f"{field_name}: with merge_strategy='json' give a non-empty list of JSON-patch operations, "
            "e.g. [{'op': 'replace', 'path': '/spec/replicas', 'value': 2}]"
        )
    for index, op in enumerate(ops):
        where = f"{field_name}[{index}]"
        if not isinstance(op, dict):
            raise ResourceSpecError(f"{where}: expected an operation mapping, got {type(op).__name__}")
        kind = op.get("op")
        if kind not in _JSON_PATCH_OPS:
            raise ResourceSpecError(f"{where}.op: {kind!r} is not allowed; allowed: {', '.join(_JSON_PATCH_OPS)}")
        path = op.get("path")
        if not isinstance(path, str) or not (path == "" or path.startswith("/")):
            raise ResourceSpecError(f"{where}.path: {path!r} is not a JSON pointer; it must start with '/'")
        if kind in ("move", "copy") and not (isinstance(op.get("from"), str) and op["from"].startswith("/")):
            raise ResourceSpecError(f"{where}.from: required for '{kind}' (a JSON pointer starting with '/')")
        if kind in ("add", "replace", "test") and "value" not in op:
            raise ResourceSpecError(f"{where}.value: required for '{kind}'")
    return ops


def normalize_owner(owner: Any, field_name: str = "set_owner_reference") -> dict[str, str] | None:
    """An owner given as a dict/model with apiVersion, kind and name (or metadata.name)."""
    if owner is None or owner is False:
        return None
    if is_model_object(owner):
        owner = sanitize(owner)
    if isinstance(owner, str):
        raise ResourceSpecError(
            f"{field_name}: give the owner as a mapping {{'apiVersion': ..., 'kind': ..., 'name': ...}} "
            "(or the owner object itself), not a string"
        )
    if not isinstance(owner, Mapping):
        raise ResourceSpecError(
            f"{field_name}: expected a mapping with apiVersion, kind and name, got {type(owner).__name__}"
        )
    name = owner.get("name") or (owner.get("metadata") or {}).get("name")
    result = {
        "apiVersion": validate_api_version(owner.get("apiVersion"), f"{field_name}.apiVersion"),
        "kind": validate_kind(owner.get("kind"), f"{field_name}.kind"),
        "name": validate_object_name(name, f"{field_name}.name"),
    }
    return result


def validate_timeout(value: Any, field_name: str = "timeout") -> float | None:
    """Seconds > 0, or None to wait without limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ResourceSpecError(f"{field_name}: {value!r} is not allowed; give seconds > 0, or None to wait forever")
    return float(value)


def validate_event_reasons(value: Any, field_name: str = "fail_on_events") -> tuple[str, ...]:
    """Warning-event reasons (e.g. ``ProvisioningFailed``) that end a wait as a failure."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not all(
        isinstance(v, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", v) for v in value
    ):
        raise ResourceSpecError(f"{field_name}: expected a list of event reasons such as 'ProvisioningFailed'")
    return tuple(value)


def validate_attribute_outputs(value: Any, field_name: str = "attribute_outputs") -> dict[str, str]:
    """Output name → kubectl JSONPath. ``name``/``manifest`` may be overridden."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ResourceSpecError(f"{field_name}: expected a mapping of output names to JSONPaths")
    result: dict[str, str] = {}
    for key, expr in value.items():
        if not isinstance(key, str) or not OUTPUT_NAME_RE.match(key):
            raise ResourceSpecError(
                f"{field_name}: output name {key!r} is not allowed; allowed: 1-63 characters of letters, "
                "digits, '_' and '-', starting with a letter or '_'"
            )
        if not isinstance(expr, str):
            raise ResourceSpecError(f"{field_name}[{key!r}]: expected a JSONPath string, got {type(expr).__name__}")
        try:
            validate_jsonpath(expr, f"{field_name}[{key!r}]")
        except JsonPathError as exc:
            raise ResourceSpecError(str(exc)) from None
        result[key] = expr
    return result


def check_conditions(success: str | None, failure: str | None) -> None:
    """Parse (and compile CEL) now so that a broken condition never reaches the cluster."""
    for text, name in ((success, "success_condition"), (failure, "failure_condition")):
        if text is not None and not isinstance(text, str):
            raise ResourceSpecError(f"{name}: expected a string, got {type(text).__name__}")
    try:
        parse_conditions(success, failure)
    except ConditionError as exc:
        raise ResourceSpecError(str(exc)) from None


# --------------------------------------------------------------------------- #
# The options every step kind shares
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class StepOptions:
    """Where a step acts and how it waits: the options of every resource, volume, snapshot and custom-task step.

    A factory builds it once from its keyword arguments (:meth:`with_arguments`)
    and hands it to its spec builder. It is checked when built (each error names
    the argument and what is allowed) and normalised: ``timeout`` a float,
    ``fail_on_events`` a tuple, ``cleanup`` its value, ``kubeconfig`` a string.
    Each kind's defaults are one instance: :data:`RESOURCE_OPTIONS` and
    :data:`DELETE_OPTIONS` here, ``VOLUME_OPTIONS``/``SNAPSHOT_OPTIONS`` in
    :mod:`.volume_spec`, ``CUSTOM_TASK_OPTIONS`` in :mod:`.custom_task_spec`.
    """

    namespace: str | None = None
    success_condition: str | None = None
    failure_condition: str | None = None
    timeout: float | None = 3600.0
    fail_on_events: tuple[str, ...] = ()
    cleanup: str = Cleanup.NEVER.value
    kubeconfig: str | None = None
    context: str | None = None

    def __post_init__(self) -> None:
        if self.namespace is not None:
            validate_namespace(self.namespace, "namespace")
        check_conditions(self.success_condition, self.failure_condition)
        kubeconfig = str(self.kubeconfig) if isinstance(self.kubeconfig, Path) else self.kubeconfig
        for value, name_of in ((kubeconfig, "kubeconfig"), (self.context, "context")):
            if value is not None and (not isinstance(value, str) or not value):
                raise ResourceSpecError(f"{name_of}: expected a non-empty string")
        normal = {
            "timeout": validate_timeout(self.timeout),
            "fail_on_events": validate_event_reasons(self.fail_on_events),
            "cleanup": parse_choice(self.cleanup, Cleanup, "cleanup").value,
            "kubeconfig": kubeconfig,
        }
        for key, value in normal.items():
            object.__setattr__(self, key, value)

    def with_arguments(self, arguments: Mapping[str, Any]) -> StepOptions:
        """These options with those among ``arguments`` (a factory's keyword arguments, by name) applied."""
        names = {f.name for f in dataclasses.fields(self)}
        return self.replace(**{key: value for key, value in arguments.items() if key in names})

    def replace(self, **changes: Any) -> StepOptions:
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The options by name (the spec classes have fields of the same names)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


#: A resource step's defaults (those of ``resource_step``).
RESOURCE_OPTIONS = StepOptions()
#: A delete step's defaults (those of ``delete_step``).
DELETE_OPTIONS = StepOptions(timeout=600.0)


# --------------------------------------------------------------------------- #
# The spec
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class ResourceSpec(SpecCodec):
    """A validated resource-step configuration (JSON-safe; see :meth:`to_dict`).

    ``body`` is the object (dict), the JSON-patch list, or None when the step
    names its target only (``get``/``delete`` with ``api_version``/``kind``).
    ``name``/``namespace`` are the explicit or manifest values (None: decided
    at run time — name from the step input, namespace from the stack).
    """

    action: str = Action.CREATE.value
    body: Any = None
    api_version: str = ""
    kind: str = ""
    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    merge_strategy: str | None = None
    force: bool = False
    success_condition: str | None = None
    failure_condition: str | None = None
    timeout: float | None = None
    attribute_outputs: dict[str, str] = field(default_factory=dict)
    fail_on_events: tuple[str, ...] = ()
    cleanup: str = Cleanup.NEVER.value
    owner: dict[str, str] | None = None
    block_owner_deletion: bool = False
    propagation_policy: str = "Background"
    wait_for_deletion: bool = False
    kubeconfig: str | None = None
    context: str | None = None
    stream_logs: bool = True

    _spec_error = ResourceSpecError
    _tuple_fields = ("fail_on_events",)
    _dict_fields = ("attribute_outputs",)

    @property
    def has_conditions(self) -> bool:
        """Whether the step waits on the object after its action."""
        return bool(self.success_condition or self.failure_condition or self.fail_on_events)

    @property
    def output_names(self) -> tuple[str, ...]:
        """The step's outputs, in order: ``name``, ``manifest``, then the attribute outputs."""
        if not ACTIONS[self.action].waits:
            return ("name",)
        extra = tuple(k for k in self.attribute_outputs if k not in RESERVED_OUTPUTS)
        return RESERVED_OUTPUTS + extra

    def replace(self, **changes: Any) -> ResourceSpec:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


def _only_with(option: str, action: Action) -> None:
    """Raise naming ``option`` and the actions taking it, unless ``action`` does (:func:`.actions.option_error`)."""
    error = option_error(option, action.value)
    if error:
        raise ResourceSpecError(error)


def _merge_identity(
    body: Any, api_version: str | None, kind: str | None, name: str | None, namespace: str | None
) -> tuple[str | None, str | None, str | None, str | None, str | None]:
    """Combine explicit api_version/kind/name/namespace with the manifest's; conflicts are errors."""
    metadata: Mapping[str, Any] = {}
    manifest_values: dict[str, Any] = {}
    if isinstance(body, dict):
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise ResourceSpecError("k8s_resource.metadata: expected a mapping")
        manifest_values = {
            "api_version": body.get("apiVersion"),
            "kind": body.get("kind"),
            "resource_name": metadata.get("name"),
            "namespace": metadata.get("namespace"),
        }
    explicit = {"api_version": api_version, "kind": kind, "resource_name": name, "namespace": namespace}
    manifest_field = {
        "api_version": "k8s_resource.apiVersion",
        "kind": "k8s_resource.kind",
        "resource_name": "k8s_resource.metadata.name",
        "namespace": "k8s_resource.metadata.namespace",
    }
    merged: dict[str, Any] = {}
    for key, value in explicit.items():
        from_manifest = manifest_values.get(key)
        if value is not None and from_manifest not in (None, "") and value != from_manifest:
            raise ResourceSpecError(
                f"{key}: {value!r} does not match {manifest_field[key]} {from_manifest!r}; "
                "give it in one place or make them equal"
            )
        merged[key] = value if value is not None else (from_manifest if from_manifest != "" else None)
    generate_name = metadata.get("generateName") if isinstance(metadata, Mapping) else None
    return merged["api_version"], merged["kind"], merged["resource_name"], merged["namespace"], generate_name


def build_resource_spec(
    k8s_resource: Any = None,
    *,
    action: str = "create",
    merge_strategy: str | None = None,
    api_version: str | None = None,
    kind: str | None = None,
    resource_name: str | None = None,
    attribute_outputs: Mapping[str, str] | None = None,
    force: bool = False,
    set_owner_reference: Any = None,
    block_owner_deletion: bool = False,
    propagation_policy: str = "Background",
    wait_for_deletion: bool = False,
    options: StepOptions = RESOURCE_OPTIONS,
    name_from_input: bool = False,
    stream_logs: bool = True,
) -> ResourceSpec:
    """Validate every resource-step option; raise :class:`ResourceSpecError` naming the field.

    ``options``: namespace, conditions, timeout, events, clean-up and cluster (checked when built).
    ``name_from_input``: the target's name will be bound at call time (the
    step's ``resource_name`` input), so a missing name is not an error here.
    """
    act = parse_choice(action, Action, "action")
    rules = ACTIONS[act.value]
    strategy: MergeStrategy | None = None
    if merge_strategy is not None:
        strategy = parse_choice(merge_strategy, MergeStrategy, "merge_strategy")
        _only_with("merge_strategy", act)
    elif "merge_strategy" in rules.options:
        strategy = MergeStrategy.STRATEGIC
    is_json_patch = strategy is MergeStrategy.JSON

    body = None
    if k8s_resource is not None:
        body = load_resource(k8s_resource)
    if is_json_patch:
        if body is None:
            raise ResourceSpecError("k8s_resource: required with merge_strategy='json' (the list of operations)")
        if isinstance(body, dict):
            raise ResourceSpecError(
                "k8s_resource: with merge_strategy='json' give the list of JSON-patch operations, "
                "and name the target with api_version, kind and resource_name"
            )
        validate_json_patch(body)
        missing = [n for n, v in (("api_version", api_version), ("kind", kind)) if not v]
        if missing:
            raise ResourceSpecError(
                f"{', '.join(missing)}: required with merge_strategy='json' (the operations do not say "
                "which object they patch)"
            )
    elif isinstance(body, list):
        raise ResourceSpecError(
            "k8s_resource: a list is only allowed as JSON-patch operations (action='patch', "
            "merge_strategy='json') here; resource_step(...) takes several objects and acts on each in order"
        )
    elif body is None and rules.needs_object:
        raise ResourceSpecError(
            f"k8s_resource: required for action={act.value!r}; give a dict, YAML/JSON text, a file path "
            "or a kubernetes-client model object"
        )

    if resource_name is not None:
        validate_object_name(resource_name, "resource_name")
    api, knd, name, ns, generate_name = _merge_identity(body, api_version, kind, resource_name, options.namespace)
    if not api:
        raise ResourceSpecError(
            "k8s_resource.apiVersion: missing; every object needs apiVersion and kind "
            "(e.g. apiVersion: v1, kind: ConfigMap), or pass api_version=..."
        )
    validate_api_version(api, "k8s_resource.apiVersion" if api_version is None else "api_version")
    if not knd:
        raise ResourceSpecError(
            "k8s_resource.kind: missing; every object needs apiVersion and kind "
            "(e.g. apiVersion: v1, kind: ConfigMap), or pass kind=..."
        )
    validate_kind(knd, "k8s_resource.kind" if kind is None else "kind")
    if name is not None:
        validate_object_name(name, "k8s_resource.metadata.name")
    if ns is not None and options.namespace is None and "{{" not in str(ns):
        validate_namespace(ns, "k8s_resource.metadata.namespace")
    if generate_name is not None:
        _only_with("k8s_resource.metadata.generateName", act)
        if not isinstance(generate_name, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*)?", generate_name):
            raise ResourceSpecError(
                f"k8s_resource.metadata.generateName: {generate_name!r} is not allowed; allowed: a prefix "
                "of lowercase letters, digits, '-' and '.'"
            )
    if name is None and generate_name is None and not name_from_input:
        raise ResourceSpecError(
            "k8s_resource.metadata.name: missing; give metadata.name"
            + (" (or metadata.generateName)" if "k8s_resource.metadata.generateName" in rules.options else "")
            + ", pass resource_name=..., or bind the step's resource_name input"
        )

    if not rules.waits:
        for value, name_of in (
            (options.success_condition, "success_condition"),
            (options.failure_condition, "failure_condition"),
            (attribute_outputs, "attribute_outputs"),
            (options.fail_on_events, "fail_on_events"),
        ):
            if value:
                raise ResourceSpecError(
                    f"{name_of}: not allowed with action={act.value!r} (a {act.value} step has no conditions or outputs)"
                )
    outputs = validate_attribute_outputs(attribute_outputs)

    clean = parse_choice(options.cleanup, Cleanup, "cleanup")
    if clean is not Cleanup.NEVER:
        _only_with("cleanup", act)
    owner = normalize_owner(set_owner_reference)
    if owner is not None:
        _only_with("set_owner_reference", act)
    if force:
        _only_with("force", act)
    if propagation_policy not in _PROPAGATION:
        raise ResourceSpecError(
            f"propagation_policy: {propagation_policy!r} is not allowed; allowed: {', '.join(_PROPAGATION)}"
        )
    if wait_for_deletion:
        _only_with("wait_for_deletion", act)

    return ResourceSpec(
        action=act.value,
        body=body,
        api_version=api,
        kind=knd,
        name=name,
        generate_name=generate_name,
        namespace=ns,
        merge_strategy=strategy.value if strategy else None,
        force=bool(force),
        success_condition=options.success_condition,
        failure_condition=options.failure_condition,
        timeout=options.timeout,
        attribute_outputs=outputs,
        fail_on_events=options.fail_on_events,
        cleanup=clean.value,
        owner=owner,
        block_owner_deletion=bool(block_owner_deletion),
        propagation_policy=propagation_policy,
        wait_for_deletion=bool(wait_for_deletion),
        kubeconfig=options.kubeconfig,
        context=options.context,
        stream_logs=bool(stream_logs),
    )


def is_object_list(value: Any) -> bool:
    """Whether loaded ``k8s_resource`` data is several objects (not one object, not JSON-patch operations)."""
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) and "op" not in item for item in value)

"""Step operator settings from a settings file or run config, resolved the way ZenML does.

A file holds bare settings (``pod_settings: ...``), a settings mapping
(``step_operator: {...}``) or a run config (``settings:`` and/or ``steps:``).
:func:`extract_settings` picks the layers that apply to the ``k8s`` flavor (and a
component, if named), :func:`resolve_settings` validates each layer and overlays
them on a registered component's configuration (:func:`component_config`).

Bad input raises :class:`InvalidSettings` with one line per field path; a
component that is not a registered ``k8s`` step operator raises
:class:`ComponentError`. ZenML is imported inside the functions, so importing this
module stays fast.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import yaml

if TYPE_CHECKING:
    from zenml.models import ComponentResponse

    from .flavor import K8sStepOperatorConfig
    from .settings import K8sStepOperatorSettings

SETTINGS_KEY = "step_operator"

Layers = list[tuple[str, dict]]


class InvalidSettings(ValueError):
    """The settings file, a settings layer or a component's configuration is not valid."""


class ComponentError(LookupError):
    """The named component is not a registered ``k8s`` step operator, or cannot be used."""


def read_document(path: str) -> Any:
    """The parsed YAML/JSON of a settings file."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise InvalidSettings(f"{path}: not valid YAML/JSON: {exc}") from exc


def _key_selector(key: Any) -> Optional[str]:
    """``""`` for ``step_operator``, ``".k8s"``/``":name"`` for a flavor/component key; None otherwise."""
    if not isinstance(key, str) or not key.startswith(SETTINGS_KEY):
        return None
    selector = key[len(SETTINGS_KEY) :]
    return selector if selector == "" or selector[0] in ".:" else None


def _applies(key: Any, component: Optional[str]) -> bool:
    """Whether a settings key selects this flavor (and the given component, if any)."""
    from .flavor import FLAVOR_NAME

    selector = _key_selector(key)
    if selector is None:
        return False
    if selector.startswith("."):
        return selector == f".{FLAVOR_NAME}"
    if selector.startswith(":") and component:
        return key == f"{SETTINGS_KEY}:{component}"
    return True


def _pick_settings(container: Any, where: str, component: Optional[str], notes: list[str]) -> dict:
    """The step operator settings in a ``settings:`` mapping, resolving keys like ZenML.

    ``step_operator``, ``step_operator.k8s`` and ``step_operator:<component>``
    apply; other flavors' or components' keys are ignored; two keys that apply
    are an error (as in ZenML).
    """
    from .flavor import FLAVOR_NAME

    if container is None:
        return {}
    if not isinstance(container, dict):
        raise InvalidSettings(f"{where}: expected a mapping of settings, got {type(container).__name__}")
    applicable = []
    for key in container:
        selector = _key_selector(key)
        if _applies(key, component):
            applicable.append(key)
        elif selector is not None and selector.startswith("."):
            notes.append(f"{where}.{key}: ignored (settings for another flavor; this one is `{FLAVOR_NAME}`)")
        elif selector is not None:
            notes.append(f"{where}.{key}: ignored (settings for another component than `{component}`)")
    if len(applicable) > 1:
        raise InvalidSettings(
            f"{where}: duplicate step operator settings under {' and '.join(applicable)}; "
            "ZenML rejects this too - keep one of them"
        )
    if not applicable:
        return {}
    value = container[applicable[0]]
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidSettings(f"{where}.{applicable[0]}: expected a mapping, got {type(value).__name__}")
    return copy.deepcopy(value)


def extract_settings(
    document: Any, step: Optional[str], component: Optional[str], notes: list[str]
) -> tuple[Layers, Optional[str]]:
    """Settings layers ``[(where, settings dict), ...]`` (pipeline first) and the step name.

    Accepted shapes: bare settings (``pod_settings: ...``); a settings mapping
    (``step_operator: {...}``); a run config (``settings: step_operator: ...``
    and/or ``steps: <step>: settings: step_operator: ...``).
    """
    if document is None:
        return [], step
    if not isinstance(document, dict):
        raise InvalidSettings(f"settings file: expected a mapping at the top, got {type(document).__name__}")
    if "settings" in document or "steps" in document:
        layers = [("settings", _pick_settings(document.get("settings"), "settings", component, notes))]
        steps = document.get("steps") or {}
        if not isinstance(steps, dict):
            raise InvalidSettings("steps: expected a mapping of step name to step configuration")
        with_settings = [
            name
            for name, cfg in steps.items()
            if isinstance(cfg, dict)
            and isinstance(cfg.get("settings"), dict)
            and any(_applies(k, component) for k in cfg["settings"])
        ]
        if step is None and len(with_settings) > 1:
            raise InvalidSettings(
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
    if any(_key_selector(k) is not None for k in document):
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


def _validate(model: Any, data: Any, what: str) -> Any:
    """``model.model_validate(data)``; a validation error becomes :class:`InvalidSettings` naming ``what``."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidSettings(f"invalid {what}:\n{_validation_message(exc)}") from exc


def _validate_settings(data: dict, what: str) -> "K8sStepOperatorSettings":
    from .settings import K8sStepOperatorSettings

    return _validate(K8sStepOperatorSettings, data, what)


def registered_component(name: str) -> tuple["ComponentResponse", "K8sStepOperatorConfig"]:
    """The registered ``k8s`` step operator's model and validated configuration (via ZenML's Client)."""
    from zenml.client import Client
    from zenml.enums import StackComponentType

    from .flavor import FLAVOR_NAME, K8sStepOperatorConfig

    try:
        model = Client().get_stack_component(StackComponentType.STEP_OPERATOR, name, allow_name_prefix_match=False)
    except KeyError as exc:
        raise ComponentError(f"no step operator named `{name}` is registered in ZenML") from exc
    if model.flavor_name != FLAVOR_NAME:
        raise ComponentError(f"step operator `{name}` has flavor `{model.flavor_name}`, not `{FLAVOR_NAME}`")
    return model, _validate(K8sStepOperatorConfig, model.configuration, f"configuration of `{name}`")


def component_config(name: str) -> "K8sStepOperatorConfig":
    """The registered step operator's configuration."""
    return registered_component(name)[1]


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


def load_settings(
    path: str, step: Optional[str], component: Optional[str], notes: list[str]
) -> tuple["K8sStepOperatorSettings", Optional["K8sStepOperatorConfig"], Optional[str]]:
    """The resolved settings of a file, the component's configuration (if named) and the step name."""
    layers, step = extract_settings(read_document(path), step, component, notes)
    config = component_config(component) if component else None
    return resolve_settings(layers, config, notes), config, step


def load_pod_template(path: str) -> dict[str, Any]:
    """Reads ``pod_settings.pod_template_file`` (``~`` expanded; relative to the working directory) and
    parses it (:func:`k8s_step_operator.manifest.parse_pod_template`); ValueError naming the field."""
    from .manifest import TEMPLATE_FIELD, parse_pod_template

    where = f"{TEMPLATE_FIELD} ({path})"
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"{where}: cannot read file: {err.strerror}") from err
    return parse_pod_template(text, where)


def pod_template_of(settings: "K8sStepOperatorSettings") -> Optional[dict[str, Any]]:
    """The parsed pod template the settings name, if any."""
    path = settings.pod_settings.pod_template_file if settings.pod_settings else None
    return load_pod_template(path) if path else None

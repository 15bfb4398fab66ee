"""Pure validators for Kubernetes names, labels, quantities and API objects.

Every validator raises a ``ValueError`` whose message starts with the field
path it was given (e.g. ``pod_settings.labels['team']``) and says what is
allowed. Nothing here talks to a cluster.
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal, getcontext
from typing import Any, Iterable, Mapping

# --------------------------------------------------------------------------- #
# Field path helpers
# --------------------------------------------------------------------------- #


def field_path(base: str, key: str) -> str:
    """Path of attribute ``key`` below ``base`` (``a.b``)."""
    return f"{base}.{key}" if base else key


def item_path(base: str, index: int) -> str:
    """Path of list item ``index`` below ``base`` (``a[0]``)."""
    return f"{base}[{index}]"


def entry_path(base: str, key: str) -> str:
    """Path of map entry ``key`` below ``base`` (``a['k']``)."""
    return f"{base}[{key!r}]"


def _allowed(values: Iterable[str]) -> str:
    return ", ".join(sorted(values))


# --------------------------------------------------------------------------- #
# Quantities
# --------------------------------------------------------------------------- #

# The grammar is checked here, the value is computed by the official client's
# ``kubernetes.utils.parse_quantity``. That parser is more lenient than the API
# server (it takes ``" 1"``, ``"1_000"``, ``"NaN"``, ``"1e3Gi"``), so it only
# ever sees text this grammar accepted. This grammar leaves out the ``n`` and ``u``
# suffixes that both also take (as it always has; tests/unit/test_validation.py).
_QUANTITY_RE = re.compile(
    r"^(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<exp>[eE][+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E))?$"
)
QUANTITY_HINT = (
    "expected a Kubernetes quantity: a number with an optional suffix "
    "(Ki, Mi, Gi, Ti, Pi, Ei, m, k, M, G, T, P, E) or exponent, "
    "e.g. 2, 1.5, 500m, 4Gi, 1e3"
)


def _quantity_match(value: Any) -> re.Match[str]:
    match = _QUANTITY_RE.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"{value!r} is not a valid quantity; {QUANTITY_HINT}")
    return match


def quantity_sign(value: str) -> int:
    """-1, 0 or 1: the sign of a quantity, read from its text.

    No arithmetic, so checking a quantity does not load the Kubernetes client
    (settings are validated in every step's pod, see ``tests/unit/test_flavor_import.py``).

    Raises:
        ValueError: If ``value`` does not follow the quantity grammar.
    """
    number = _quantity_match(value)["number"]
    if not any(digit in "123456789" for digit in number):
        return 0
    return -1 if number.startswith("-") else 1


def parse_quantity(value: str) -> Decimal:
    """Parses a Kubernetes quantity string (``4Gi``, ``500m``, ``1e3``).

    Args:
        value: The quantity text.

    Returns:
        The quantity as a ``Decimal`` in base units.

    Raises:
        ValueError: If ``value`` does not follow the quantity grammar.
    """
    _quantity_match(value)
    # Imported on first use: importing any part of ``kubernetes`` loads the whole client.
    from kubernetes.utils.quantity import parse_quantity as kube_parse_quantity

    amount: Decimal = kube_parse_quantity(value)
    if amount and amount.adjusted() > getcontext().Emax:
        raise ValueError(f"{value!r}: exponent out of range")
    return amount


def validate_quantity(
    value: Any, field: str, *, allow_negative: bool = False
) -> str:
    """Validates a quantity and returns it as a string.

    Ints and floats (not bools) are accepted and converted to their string
    form, so ``{"cpu": 2}`` works like ``{"cpu": "2"}``.

    Args:
        value: The quantity (``str``, ``int`` or ``float``).
        field: Field path used in error messages.
        allow_negative: Whether negative quantities are allowed.

    Returns:
        The quantity text.

    Raises:
        ValueError: If the value is not a valid (non-negative) quantity.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(
            f"{field}: got {type(value).__name__} {value!r}; {QUANTITY_HINT}"
        )
    text = value if isinstance(value, str) else str(value)
    try:
        sign = quantity_sign(text)
    except ValueError:
        raise ValueError(
            f"{field}: {text!r} is not a valid quantity; {QUANTITY_HINT}"
        ) from None
    if sign < 0 and not allow_negative:
        raise ValueError(
            f"{field}: {text!r} is negative; only quantities >= 0 are allowed"
        )
    return text


# --------------------------------------------------------------------------- #
# Names, labels and annotations
# --------------------------------------------------------------------------- #

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
LABEL_VALUE_MAX = 63
QUALIFIED_NAME_MAX = 63
ANNOTATIONS_TOTAL_MAX = 256 * 1024

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_RE = re.compile(rf"^{_DNS1123_LABEL}$")
_DNS1123_SUBDOMAIN_RE = re.compile(
    rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$"
)
_QUALIFIED_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")

_DNS1123_LABEL_RULE = (
    "must be at most 63 characters of lowercase letters, digits and '-', "
    "starting and ending with a letter or digit"
)
_DNS1123_SUBDOMAIN_RULE = (
    "must be at most 253 characters of lowercase letters, digits, '-' and "
    "'.', each dot-separated part starting and ending with a letter or digit"
)
_NAME_PART_RULE = (
    "the name part must be 1-63 characters of letters, digits, '-', '_' "
    "and '.', starting and ending with a letter or digit"
)
_QUALIFIED_KEY_RULE = (
    "allowed: an optional DNS-1123 subdomain prefix (at most 253 "
    "characters) followed by '/', and a name of 1-63 characters of letters, "
    "digits, '-', '_' and '.', starting and ending with a letter or digit"
)
_LABEL_VALUE_RULE = (
    "allowed: empty, or at most 63 characters of letters, digits, '-', '_' "
    "and '.', starting and ending with a letter or digit"
)


def _require_str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValueError(
            f"{field}: expected a string, got {type(value).__name__} {value!r}"
        )
    return value


def validate_dns1123_label(name: Any, field: str) -> str:
    """Validates a DNS-1123 label (namespaces, container and volume names)."""
    name = _require_str(name, field)
    if len(name) > DNS1123_LABEL_MAX or not _DNS1123_LABEL_RE.match(name):
        raise ValueError(
            f"{field}: {name!r} is not a valid DNS-1123 label; it "
            f"{_DNS1123_LABEL_RULE}"
        )
    return str(name)


def validate_dns1123_subdomain(name: Any, field: str) -> str:
    """Validates a DNS-1123 subdomain (secret, pod and class names)."""
    name = _require_str(name, field)
    if len(name) > DNS1123_SUBDOMAIN_MAX or not _DNS1123_SUBDOMAIN_RE.match(
        name
    ):
        raise ValueError(
            f"{field}: {name!r} is not a valid DNS-1123 subdomain; it "
            f"{_DNS1123_SUBDOMAIN_RULE}"
        )
    return str(name)


def _validate_qualified_name(key: str, field: str, kind: str) -> None:
    prefix, slash, name = key.rpartition("/")
    problem = None
    if slash and not prefix:
        problem = "the prefix before '/' is empty"
    elif prefix and (
        len(prefix) > DNS1123_SUBDOMAIN_MAX
        or not _DNS1123_SUBDOMAIN_RE.match(prefix)
    ):
        problem = f"the prefix {prefix!r} is not a DNS-1123 subdomain"
    elif len(name) > QUALIFIED_NAME_MAX or not _QUALIFIED_NAME_RE.match(name):
        problem = _NAME_PART_RULE
    if problem:
        raise ValueError(
            f"{field}: {key!r} is not a valid {kind} ({problem}); "
            f"{_QUALIFIED_KEY_RULE}"
        )


def validate_label_key(key: Any, field: str) -> str:
    """Validates a label key (``[prefix/]name``)."""
    key = _require_str(key, field)
    _validate_qualified_name(key, field, "label key")
    return str(key)


def validate_annotation_key(key: Any, field: str) -> str:
    """Validates an annotation key (label-key grammar, case-insensitive)."""
    key = _require_str(key, field)
    _validate_qualified_name(key.lower(), field, "annotation key")
    return str(key)


def validate_label_value(value: Any, field: str) -> str:
    """Validates a label value (empty, or a ≤63-char qualified name)."""
    value = _require_str(value, field)
    if value and (
        len(value) > LABEL_VALUE_MAX or not _QUALIFIED_NAME_RE.match(value)
    ):
        raise ValueError(
            f"{field}: {value!r} is not a valid label value; "
            f"{_LABEL_VALUE_RULE}"
        )
    return str(value)


def validate_labels(labels: Any, field: str) -> dict[str, str]:
    """Validates a label map (keys and values); returns a plain copy."""
    if not isinstance(labels, Mapping):
        raise ValueError(
            f"{field}: expected a mapping of label keys to values, got "
            f"{type(labels).__name__}"
        )
    result = {}
    for key, value in labels.items():
        validate_label_key(key, field)
        result[key] = validate_label_value(value, entry_path(field, key))
    return result


def validate_annotations(annotations: Any, field: str) -> dict[str, str]:
    """Validates an annotation map (keys, string values, total size)."""
    if not isinstance(annotations, Mapping):
        raise ValueError(
            f"{field}: expected a mapping of annotation keys to strings, got "
            f"{type(annotations).__name__}"
        )
    total = 0
    for key, value in annotations.items():
        validate_annotation_key(key, field)
        _require_str(value, entry_path(field, key))
        total += len(key.encode()) + len(value.encode())
    if total > ANNOTATIONS_TOTAL_MAX:
        raise ValueError(
            f"{field}: annotations total {total} bytes; at most "
            f"{ANNOTATIONS_TOTAL_MAX} bytes are allowed"
        )
    return dict(annotations)


def validate_choice(value: Any, field: str, allowed: Iterable[str]) -> str:
    """Validates that ``value`` is one of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(
            f"{field}: {value!r} is not allowed; allowed: {_allowed(allowed)}"
        )
    return str(value)


# --------------------------------------------------------------------------- #
# Kubernetes API objects (kubernetes-client models, camelCase or snake_case)
# --------------------------------------------------------------------------- #

_LIST_RE = re.compile(r"^list\[(?P<item>.+)\]$")
_DICT_RE = re.compile(r"^dict\[str, (?P<item>.+)\]$")
_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "datetime": (str,),
    "date": (str,),
}


def _model_class(type_name: str) -> Any:
    from kubernetes.client import models

    return getattr(models, type_name, None)


def is_model_object(value: Any) -> bool:
    """True for kubernetes-client model objects (``V1Toleration``, ...)."""
    return hasattr(value, "openapi_types") and hasattr(value, "attribute_map")


def sanitize(value: Any) -> Any:
    """Serializes client model objects (at any depth) to camelCase data."""
    return _api_client().sanitize_for_serialization(value)


@functools.lru_cache(maxsize=1)
def _api_client() -> Any:
    from kubernetes.client import ApiClient

    return ApiClient()


def to_api_dict(
    value: Any, type_name: str, field: str, *, keep_none: bool = False
) -> Any:
    """Normalizes a Kubernetes API value to its camelCase JSON form.

    ``value`` may be a kubernetes-client model object, or plain data whose
    object keys are camelCase (API form) or snake_case (client attribute
    names), mixed freely and at any depth. Keys are resolved with the model's
    ``attribute_map`` and nested values with its ``openapi_types``; map keys
    (labels, resource names, ...) are kept verbatim. ``None`` attributes are
    dropped unless ``keep_none`` (used for overrides, where ``None`` means
    "remove this key").

    Args:
        value: The value to normalize.
        type_name: The kubernetes-client type, e.g. ``"V1Toleration"`` or
            ``"list[V1Volume]"``.
        field: Field path used in error messages.
        keep_none: Keep attributes whose value is ``None``.

    Returns:
        The normalized value (dicts, lists and JSON primitives only).

    Raises:
        ValueError: On unknown fields (listing the allowed ones) and values
            of the wrong type.
    """
    if is_model_object(value):
        value = sanitize(value)
    list_match = _LIST_RE.match(type_name)
    if list_match:
        if not isinstance(value, (list, tuple)):
            raise ValueError(
                f"{field}: expected a list, got {type(value).__name__}"
            )
        item_type = list_match["item"]
        return [
            to_api_dict(
                item, item_type, item_path(field, index), keep_none=keep_none
            )
            for index, item in enumerate(value)
        ]
    dict_match = _DICT_RE.match(type_name)
    if dict_match:
        if not isinstance(value, Mapping):
            raise ValueError(
                f"{field}: expected a mapping, got {type(value).__name__}"
            )
        item_type = dict_match["item"]
        return {
            key: None
            if item is None and keep_none
            else to_api_dict(
                item, item_type, entry_path(field, key), keep_none=keep_none
            )
            for key, item in value.items()
        }
    if type_name == "object":
        return sanitize(value)
    if type_name in _PRIMITIVES:
        return _check_primitive(value, type_name, field)
    model = _model_class(type_name)
    if model is None:  # pragma: no cover - unknown client type; keep as is
        return sanitize(value)
    return _model_to_api_dict(value, model, field, keep_none)


def _check_primitive(value: Any, type_name: str, field: str) -> Any:
    expected = _PRIMITIVES[type_name]
    is_bool = isinstance(value, bool)
    if not isinstance(value, expected) or (is_bool and type_name != "bool"):
        raise ValueError(
            f"{field}: expected {type_name}, got {type(value).__name__} "
            f"{value!r}"
        )
    return value


def _model_to_api_dict(
    value: Any, model: Any, field: str, keep_none: bool
) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{field}: expected a mapping ({model.__name__}), got "
            f"{type(value).__name__}"
        )
    attribute_map: dict[str, str] = model.attribute_map
    types: dict[str, str] = model.openapi_types
    json_to_attr = {json_key: attr for attr, json_key in attribute_map.items()}
    result: dict[str, Any] = {}
    seen_as: dict[str, str] = {}
    for key, item in value.items():
        attr = key if key in attribute_map else json_to_attr.get(key)
        if attr is None:
            raise ValueError(
                f"{field_path(field, str(key))}: unknown field; allowed: "
                f"{_allowed(attribute_map)}"
            )
        json_key = attribute_map[attr]
        if json_key in seen_as:
            raise ValueError(
                f"{field_path(field, str(key))}: given twice (also as "
                f"{seen_as[json_key]!r})"
            )
        seen_as[json_key] = key
        if item is None:
            if keep_none:
                result[json_key] = None
            continue
        result[json_key] = to_api_dict(
            item, types[attr], field_path(field, str(key)), keep_none=keep_none
        )
    return result

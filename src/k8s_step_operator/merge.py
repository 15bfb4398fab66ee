"""Deep merge of Kubernetes manifests (used for pod templates and overrides)."""

from __future__ import annotations

import copy
from typing import Any, Mapping


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Returns ``base`` with ``override`` merged on top; inputs are not mutated.

    Rules, applied recursively:

    * **Maps merge key by key.** Keys only in ``base`` are kept, keys only in
      ``override`` are added, keys in both are merged by these same rules.
    * **A ``None`` override value removes the key** (the API treats ``null``
      as "unset", so this is how an override clears a field).
    * **Named lists merge item by item.** When both values are lists, the
      override list is non-empty, and every item of both lists is a map with
      a ``name`` key whose values are unique within each list (containers,
      env, volumes, ports, imagePullSecrets, ...), items with the same name
      are deep-merged in place, keeping the base order, and override items
      with new names are appended in override order.
    * **Anything else replaces**: scalars, unnamed lists (tolerations,
      command, args), an empty override list (which clears the base list),
      and values whose types differ.

    Args:
        base: The base manifest (e.g. a pod template).
        override: The values to apply on top.

    Returns:
        A new merged dict sharing no mutable state with the inputs.
    """
    result = copy.deepcopy(dict(base))
    for key, value in override.items():
        if value is None:
            result.pop(key, None)
        elif key in result:
            result[key] = _merge_value(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_value(base: Any, override: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        return deep_merge(base, override)
    if isinstance(base, list) and isinstance(override, list):
        if override and _is_named_list(base) and _is_named_list(override):
            return _merge_named_lists(base, override)
    return copy.deepcopy(override)


def _is_named_list(items: list[Any]) -> bool:
    """True if every item is a map with a ``name`` and the names are unique."""
    names = []
    for item in items:
        if not isinstance(item, Mapping) or "name" not in item:
            return False
        try:
            hash(item["name"])
        except TypeError:
            return False
        names.append(item["name"])
    return len(names) == len(set(names))


def _merge_named_lists(base: list[Any], override: list[Any]) -> list[Any]:
    overrides = {item["name"]: item for item in override}
    merged = [
        deep_merge(item, overrides[item["name"]])
        if item["name"] in overrides
        else copy.deepcopy(item)
        for item in base
    ]
    base_names = {item["name"] for item in base}
    merged.extend(
        copy.deepcopy(item) for item in override if item["name"] not in base_names
    )
    return merged

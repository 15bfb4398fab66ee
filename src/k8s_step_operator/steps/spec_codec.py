"""The one ``to_dict``/``from_dict`` of the step specs (resource, volume, snapshot).

A spec travels to its step run as the step's ``spec`` parameter, a plain
JSON-able dict; :class:`SpecCodec` turns a frozen dataclass spec into that
dict and back. Each spec class names, as class attributes (not dataclass
fields), the few fields whose container type JSON does not keep.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

__all__ = ["SpecCodec"]

_Spec = TypeVar("_Spec", bound="SpecCodec")


class SpecCodec:
    """Mixin for frozen dataclass specs: ``to_dict`` and its inverse ``from_dict``.

    ``to_dict`` is :func:`dataclasses.asdict` (nested dicts and lists copied)
    with the ``_tuple_fields`` written as lists. ``from_dict`` raises
    ``_spec_error`` naming any unknown keys, reads the ``_tuple_fields`` back as
    tuples and the ``_dict_fields`` as dicts (missing or None: empty), and the
    ``_given_tuple_fields`` as tuples only when the key is present.
    """

    _spec_error: ClassVar[type[Exception]] = ValueError
    _tuple_fields: ClassVar[tuple[str, ...]] = ()
    _dict_fields: ClassVar[tuple[str, ...]] = ()
    _given_tuple_fields: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the step's ``spec`` parameter)."""
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        for name in self._tuple_fields:
            data[name] = list(getattr(self, name))
        return dict(data)

    @classmethod
    def from_dict(cls: type[_Spec], data: Mapping[str, Any]) -> _Spec:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - known
        if unknown:
            raise cls._spec_error(f"spec: unknown keys {sorted(unknown)}")
        values = dict(data)
        for name in cls._tuple_fields:
            values[name] = tuple(values.get(name) or ())
        for name in cls._dict_fields:
            values[name] = dict(values.get(name) or {})
        for name in cls._given_tuple_fields:
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

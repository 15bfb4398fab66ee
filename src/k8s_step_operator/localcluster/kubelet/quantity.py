"""Kubernetes resource quantities ("500m", "1Gi", "2e3") as exact Decimals."""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1), "k": Decimal(10**3),
            "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18)}


def parse_quantity(value: str | int | float) -> Decimal:
    """Parse a quantity; raise ValueError for garbage."""
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    text = str(value).strip()
    for suffix, factor in _BINARY.items():
        if text.endswith(suffix):
            return _number(text[: -len(suffix)], value) * factor
    if text and text[-1] in "numkMGTPE" and not text[-2:-1] in ("e", "E"):
        return _number(text[:-1], value) * _DECIMAL[text[-1]]
    return _number(text, value)


def _number(text: str, original: object) -> Decimal:
    try:
        number = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"invalid quantity {original!r}") from exc
    if not number.is_finite():
        raise ValueError(f"invalid quantity {original!r}")
    return number


def ceil_div(value: Decimal, divisor: Decimal) -> int:
    """What the downward API reports: ceil(value / divisor)."""
    return int(math.ceil(value / divisor))

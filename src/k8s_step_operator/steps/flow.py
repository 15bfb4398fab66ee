"""Conditional steps in a ZenML dynamic pipeline, with Tekton's skipping rule (no cluster, no ZenML import).

KFP's ``dsl.Condition`` blocks become ``run_when(step, ..., when=<a CEL step's
outcome>)``: the step runs when the condition is true and otherwise returns
a :class:`Skipped` marker. As in Tekton (and unlike Argo, which runs a step
after a condition block even when the block was skipped), a step whose
inputs, ``after`` steps or condition come from a skipped step is skipped
too, not run::

    @pipeline(dynamic=True)
    def flipcoin(coin: str = "heads"):
        flip = flip_coin(coin)
        heads = run_when(random_num, 0, 9, when=is_heads(flip=flip))
        tails = run_when(random_num, 10, 19, when=is_tails(flip=flip))
        run_when(print_msg, "after both", after=[heads, tails])   # skipped: one branch always is
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Skipped", "condition_value", "run_when", "skipped_steps"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Skipped:
    """What a step that did not run returns: its name and why it was skipped."""

    step: str
    reason: str

    def __getitem__(self, _key: Any) -> Skipped:
        """Any output of a skipped step is skipped."""
        return self

    def __bool__(self) -> bool:
        """A skipped step's outputs are not true."""
        return False


def condition_value(when: Any) -> bool:
    """A condition's value: a bool, or a step output (loaded) holding a bool."""
    value = when.load() if hasattr(when, "load") else when
    if not isinstance(value, bool):
        raise TypeError(
            f"when: expected a bool or a step output holding one (e.g. a cel_step's outcome), "
            f"got {type(value).__name__} {value!r}"
        )
    return value


def _first_skipped(values: Sequence[Any]) -> Skipped | None:
    for value in values:
        if isinstance(value, Skipped):
            return value
        if isinstance(value, (list, tuple)):
            inner = _first_skipped(value)
            if inner is not None:
                return inner
    return None


def _step_name(step: Callable[..., Any]) -> str:
    return str(getattr(step, "name", None) or getattr(step, "__name__", "step"))


def run_when(
    step: Callable[..., Any],
    *args: Any,
    when: Any = True,
    after: Sequence[Any] = (),
    **kwargs: Any,
) -> Any:
    """Call ``step(*args, **kwargs)`` if ``when`` holds and nothing it depends on was skipped; else :class:`Skipped`.

    ``when``: a bool or a step output holding one (loaded here, so the step waits for it).
    ``after``: outputs of steps this one must follow; any of them skipped skips this one.
    ``kwargs`` may hold ZenML's ``id``, which also names the step in the :class:`Skipped`.
    """
    name = str(kwargs.get("id") or _step_name(step))
    values: list[Any] = [when, *args, *kwargs.values(), *after]
    upstream = _first_skipped(values)
    if upstream is not None:
        skipped = Skipped(name, f"it depends on {upstream.step}, which was skipped")
    elif not condition_value(when):
        skipped = Skipped(name, "its condition is false")
    else:
        return step(*args, **kwargs)
    log.info("Step %s skipped: %s", name, skipped.reason)
    return skipped


def skipped_steps(values: Mapping[str, Any]) -> dict[str, str]:
    """``{step: reason}`` of the :class:`Skipped` among ``values`` (for reports)."""
    return {value.step: value.reason for value in values.values() if isinstance(value, Skipped)}

"""CEL conditions: binding, has(), errors and the missing-key rule."""

from __future__ import annotations

from typing import Any

import pytest

from k8s_step_operator.steps.conditions import (
    CelCondition,
    ConditionError,
    Verdict,
    compile_cel,
    evaluate,
    parse_conditions,
)

POD: dict[str, Any] = {
    "metadata": {"name": "p", "labels": {"app": "web"}},
    "status": {
        "phase": "Running",
        "replicas": 2.0,
        "conditions": [
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "False"},
        ],
    },
}

READY = "object.status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')"


def test_exists_over_conditions() -> None:
    condition = compile_cel(READY, "success_condition")
    assert not condition.matches(POD)
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert condition.matches(ready)


def test_other_macros_and_functions() -> None:
    assert compile_cel("object.status.conditions.all(c, c.status in ['True', 'False'])").matches(POD)
    assert compile_cel("object.status.conditions.filter(c, c.status == 'True').size() == 1").matches(POD)
    assert compile_cel("object.status.conditions.map(c, c.type).exists(t, t == 'Ready')").matches(POD)
    assert compile_cel("object.status.phase.startsWith('Run')").matches(POD)
    assert compile_cel("object.status.replicas == 2").matches(POD)  # JSON 2.0 equals int 2


def test_has() -> None:
    assert compile_cel("has(object.status.phase)").matches(POD)
    assert not compile_cel("has(object.status.error)").matches(POD)
    assert compile_cel("!has(object.status.error)").matches(POD)
    assert compile_cel("!has(object.status.error) && object.status.phase == 'Running'").matches(POD)


def test_missing_key_is_false() -> None:
    condition = compile_cel("object.status.error.message == 'boom'", "failure_condition")
    matched, reason = condition.check(POD)
    assert matched is False
    assert "no such key" in reason and "'error'" in reason
    assert not compile_cel("!(object.status.error.message == 'boom')").matches(POD)


def test_missing_index_is_false() -> None:
    matched, _ = compile_cel("object.status.conditions[5].type == 'Ready'").check(POD)
    assert matched is False


def test_has_on_missing_parent_is_false() -> None:
    # has() tests only its last field; a missing parent is a missing key.
    assert not compile_cel("has(object.spec.volumes)").matches(POD)


def test_or_absorbs_missing_key() -> None:
    assert compile_cel("object.status.error.message == 'x' || object.status.phase == 'Running'").matches(
        POD
    )


def test_compile_error_names_field_and_quotes_compiler() -> None:
    with pytest.raises(ConditionError) as info:
        compile_cel("object.status.phase ==", "success_condition")
    message = str(info.value)
    assert message.startswith("success_condition: CEL expression 'object.status.phase ==' does not compile")
    assert "Syntax error" in message


def test_parse_conditions_reports_cel_compile_errors_up_front() -> None:
    with pytest.raises(ConditionError, match="^failure_condition: CEL expression"):
        parse_conditions("status.phase=Running", "cel: object.status.phase == (")


def test_undefined_variable_is_a_compile_error() -> None:
    with pytest.raises(ConditionError, match="'self'.*bound as 'object'"):
        compile_cel("self.status.phase == 'Running'", "success_condition")
    with pytest.raises(ConditionError, match="undefined variable.*'foo'"):
        compile_cel("object.status.phase == foo", "success_condition")


def test_empty_cel_is_an_error() -> None:
    with pytest.raises(ConditionError, match="success_condition: the CEL expression is empty"):
        parse_conditions("cel:   ", None)


def test_non_bool_result_is_an_error_naming_the_field() -> None:
    condition = compile_cel("object.status.phase", "success_condition")
    with pytest.raises(ConditionError, match="^success_condition: .* must return a bool, got str 'Running'"):
        condition.matches(POD)
    with pytest.raises(ConditionError, match="success_condition"):
        evaluate(POD, condition, None)


def test_type_error_is_not_silently_false() -> None:
    condition = compile_cel("object.status.phase > 1", "success_condition")
    with pytest.raises(ConditionError, match="^success_condition: CEL expression .* failed to evaluate"):
        condition.matches(POD)


def test_evaluate_with_cel_conditions() -> None:
    success, failure = parse_conditions(
        READY, "cel: object.status.conditions.exists(c, c.type == 'Failed' && c.status == 'True')"
    )
    assert isinstance(success, CelCondition) and isinstance(failure, CelCondition)
    assert evaluate(POD, success, failure)[0] is Verdict.PENDING
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    verdict, reason = evaluate(failed, success, failure)
    assert verdict is Verdict.FAILED
    assert reason.startswith("failure_condition ")


def test_object_is_the_only_binding() -> None:
    condition = compile_cel("object.metadata.labels.app == 'web'")
    assert condition.matches(POD)
    assert condition.program.variables() == ["object"]

"""Argo condition grammar, condition dispatch and success/failure evaluation."""

from __future__ import annotations

from typing import Any

import pytest

from k8s_step_operator.steps.conditions import (
    ALLOWED_FORMS,
    CelCondition,
    Condition,
    ConditionError,
    Operator,
    Requirement,
    Selector,
    Verdict,
    evaluate,
    is_cel,
    parse_condition,
    parse_conditions,
    parse_optional_condition,
    parse_selector,
    render_value,
)

OBJ: dict[str, Any] = {
    "metadata": {"name": "job-1", "labels": {"0": "zero"}},
    "status": {
        "phase": "Running",
        "readyToUse": True,
        "bound": False,
        "replicas": 2.0,
        "ratio": 1.5,
        "count": 10,
        "countText": "10",
        "word": "abc",
        "nothing": None,
        "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "Complete", "status": "False"},
        ],
        "spec": {"a": 1},
    },
}


def matches(text: str, obj: dict[str, Any] = OBJ) -> bool:
    return parse_selector(text, "success_condition").matches(obj)


# --- each operator ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status.phase", True),
        ("!status.phase", False),
        ("status.phase=Running", True),
        ("status.phase=Pending", False),
        ("status.phase==Running", True),
        ("status.phase==Pending", False),
        ("status.phase!=Running", False),
        ("status.phase!=Pending", True),
        ("status.phase in (Pending,Running)", True),
        ("status.phase in (Pending,Failed)", False),
        ("status.phase notin (Pending,Running)", False),
        ("status.phase notin (Pending,Failed)", True),
        ("status.count>9", True),
        ("status.count>10", False),
        ("status.count<11", True),
        ("status.count<10", False),
    ],
)
def test_each_operator(text: str, expected: bool) -> None:
    assert matches(text) is expected


@pytest.mark.parametrize(
    ("text", "operator"),
    [
        ("a", Operator.EXISTS),
        ("!a", Operator.DOES_NOT_EXIST),
        ("a=1", Operator.EQUALS),
        ("a==1", Operator.DOUBLE_EQUALS),
        ("a!=1", Operator.NOT_EQUALS),
        ("a in (1)", Operator.IN),
        ("a notin (1)", Operator.NOT_IN),
        ("a>1", Operator.GREATER_THAN),
        ("a<1", Operator.LESS_THAN),
    ],
)
def test_operator_is_recognised(text: str, operator: Operator) -> None:
    (requirement,) = parse_selector(text, "f").requirements
    assert requirement.path == "a"
    assert requirement.operator is operator


# --- missing fields ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status.missing", False),
        ("!status.missing", True),
        ("status.missing=x", False),
        ("status.missing==x", False),
        ("status.missing in (x,y)", False),
        ("status.missing!=x", True),
        ("status.missing notin (x,y)", True),
        ("status.missing>1", False),
        ("status.missing<1", False),
        # a missing parent behaves the same as a missing leaf
        ("nope.deeper.still=x", False),
        ("nope.deeper.still!=x", True),
        ("!nope.deeper.still", True),
    ],
)
def test_missing_field(text: str, expected: bool) -> None:
    assert matches(text) is expected


# --- paths ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status.conditions.0.type=Ready", True),
        ("status.conditions.1.type=Complete", True),
        ("status.conditions.1.status=False", True),
        ("status.conditions.0.type=Complete", False),
        ("status.conditions.2.type", False),  # out of range = missing
        ("!status.conditions.2", True),
        ("status.conditions.type", False),  # a name on an array is missing
        ("metadata.labels.0=zero", True),  # digits on an object are a key
        ("status.phase.0", False),  # cannot descend into a string
    ],
)
def test_paths_and_array_indexes(text: str, expected: bool) -> None:
    assert matches(text) is expected


# --- value rendering --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status.readyToUse==true", True),
        ("status.readyToUse=True", False),  # rendered lowercase, compared exactly
        ("status.bound==false", True),
        ("status.bound!=false", False),
        ("status.replicas==2", True),  # 2.0 renders as 2
        ("status.replicas==2.0", False),
        ("status.ratio==1.5", True),
        ("status.nothing", True),  # null exists ...
        ("status.nothing=", True),  # ... and renders as the empty string
        ("status.spec", True),
    ],
)
def test_value_rendering(text: str, expected: bool) -> None:
    assert matches(text) is expected


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        (True, "true"),
        (False, "false"),
        (None, ""),
        (2.0, "2"),
        (-3.0, "-3"),
        (1e20, "100000000000000000000"),
        (1.5, "1.5"),
        (1e-7, "0.0000001"),
        (7, "7"),
        ("x y", "x y"),
        ({"a": [1, "b"]}, '{"a":[1,"b"]}'),
    ],
)
def test_render_value(value: Any, rendered: str) -> None:
    assert render_value(value) == rendered


# --- > and < use integers ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status.countText>9", True),  # numeric strings parse as ints
        ("status.countText<9", False),
        ("status.replicas>1", True),  # 2.0 renders as 2
        ("status.ratio>1", False),  # 1.5 is not an int: requirement is false
        ("status.ratio<2", False),
        ("status.word>0", False),
        ("status.word<0", False),
        ("status.readyToUse>0", False),
        ("status.count>0009", True),  # the requirement's value is an int too
    ],
)
def test_greater_less_parse_integers(text: str, expected: bool) -> None:
    assert matches(text) is expected


def test_greater_than_out_of_int64_range_is_false() -> None:
    assert not matches("n>1", {"n": 2**63})
    assert matches("n>1", {"n": 2**63 - 1})


# --- syntax details ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "status.phase == Running",
        "  status.phase=Running  ",
        "status.phase\t==\tRunning",
        "status.phase in(Running)",
        "status.phase in ( Pending , Running )",
    ],
)
def test_whitespace_around_operators(text: str) -> None:
    assert matches(text)


def test_requirements_are_anded() -> None:
    assert matches("status.phase=Running,status.readyToUse=true")
    assert not matches("status.phase=Running,status.readyToUse=false")
    assert not matches("status.phase=Pending,status.readyToUse=true")


def test_in_and_notin_are_values_in_a_value_position() -> None:
    assert matches("x in (in,notin)", {"x": "notin"})
    assert matches("in=notin", {"in": "notin"})


def test_empty_values() -> None:
    assert matches("x=", {"x": ""})
    assert not matches("x=", {"x": "a"})
    assert matches("x in (a,)", {"x": ""})
    assert matches("x in ()", {"x": ""})
    selector = parse_selector("x in (a,,b)", "f")
    assert selector.requirements[0].values == ("a", "", "b")


def test_requirement_text_round_trips() -> None:
    selector = parse_selector("a == b, !c, d notin (x, y), e>3", "f")
    assert [str(r) for r in selector.requirements] == ["a==b", "!c", "d notin (x,y)", "e>3"]
    assert selector.text == "a == b, !c, d notin (x, y), e>3"
    assert selector.kind == "argo"


def test_path_length_limit_matches_argo() -> None:
    path = "a." + "b" * 61  # 63 characters
    assert parse_selector(path, "f").requirements[0].path == path
    with pytest.raises(ConditionError, match="at most 63"):
        parse_selector(path + "c", "f")


def test_value_length_limit() -> None:
    assert parse_selector("a=" + "v" * 63, "f")
    with pytest.raises(ConditionError, match="at most 63"):
        parse_selector("a=" + "v" * 64, "f")


def test_prefixed_key_follows_qualified_name_rules() -> None:
    assert parse_selector("example.com/name=x", "f").requirements[0].path == "example.com/name"
    with pytest.raises(ConditionError, match="DNS subdomain"):
        parse_selector("Example.com/name=x", "f")


# --- parse errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("status.phase === Running", 16, "expected a value after '=='"),
        ('status.phase == "Running"', 17, "quoted"),
        ("status.phase = 'Running'", 16, "quoted"),
        ("a>=1", 3, "'>=' and '<=' are not supported"),
        ("a>abc", 3, "needs an integer"),
        ("a>-1", 3, "negative numbers"),
        ("a>", 3, "needs an integer"),
        ("a==b || c==d", 6, "use CEL for OR"),
        ("a==b,", 6, "expected a path after ','"),
        ("=x", 1, "expected a path"),
        ("!x=1", 3, "'!path' takes no operator"),
        ("a b", 3, "expected an operator"),
        ("a in b", 6, "expected '(' after in/notin"),
        ("a in (b", 8, "expected ',' or ')'"),
        ("a in (b c)", 9, "expected ',' or ')'"),
        ("a == b c", 8, "values cannot contain spaces"),
        ("status.conditions.#.type=Ready", 1, "gjson '#'"),
        ("status..phase=x", 1, "empty segment"),
        ("-a=x", 1, "must start and end with a letter or digit"),
        ("a=x_", 3, "must start and end with a letter or digit"),
        ("a/b/c=x", 1, "at most one '/'"),
    ],
)
def test_parse_errors_name_field_quote_text_and_point(text: str, column: int, fragment: str) -> None:
    with pytest.raises(ConditionError) as info:
        parse_selector(text, "success_condition")
    message = str(info.value)
    assert message.startswith("success_condition: cannot parse condition ")
    assert repr(text) in message
    assert fragment in message
    assert f"(column {column})" in message
    lines = message.splitlines()
    assert lines[1] == "    " + text
    assert lines[2] == "    " + " " * (column - 1) + "^"
    for form in ALLOWED_FORMS:
        assert form in message


def test_error_message_caret_line_stays_aligned_with_newlines() -> None:
    with pytest.raises(ConditionError) as info:
        parse_selector("a=1,\nb c", "failure_condition")
    lines = str(info.value).splitlines()
    assert lines[1] == "    a=1, b c"
    assert lines[2].index("^") == lines[1].index("c")


def test_parse_error_is_a_value_error() -> None:
    assert issubclass(ConditionError, ValueError)


@pytest.mark.parametrize("text", ["", "   "])
def test_blank_condition_is_an_error_but_optional_means_none(text: str) -> None:
    with pytest.raises(ConditionError, match="success_condition: the condition is empty"):
        parse_condition(text, "success_condition")
    assert parse_optional_condition(text, "success_condition") is None
    assert parse_optional_condition(None, "success_condition") is None


# --- dispatch between grammars ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cel"),
    [
        ("cel: object.status.phase == 'Running'", True),
        ("CEL:object.status.phase == 'Running'", True),
        ("object.status.phase == 'Running'", True),
        ("  object.status.phase == 'Running'", True),
        ("object['status'].phase == 'Running'", True),
        ("!has(object.status.error)", True),
        ("has(object.status)", True),
        ("size(object.status.conditions) > 0", True),
        ("(object.status.count > 1)", True),
        ("status.phase=Running", False),
        ("objects.x=1", False),
        ("status.object=1", False),
        ("x in (object)", False),
        ("'Running' == object.status.phase", False),  # needs the cel: prefix
    ],
)
def test_is_cel_rule(text: str, cel: bool) -> None:
    assert is_cel(text) is cel


def test_parse_condition_dispatch() -> None:
    argo = parse_condition("status.phase=Running", "success_condition")
    assert isinstance(argo, Selector)
    assert argo.kind == "argo" and argo.field == "success_condition"
    prefixed = parse_condition("cel:  object.status.phase == 'Running'", "success_condition")
    assert isinstance(prefixed, CelCondition)
    assert prefixed.kind == "cel"
    assert prefixed.source == "object.status.phase == 'Running'"
    assert prefixed.text == "cel:  object.status.phase == 'Running'"
    assert prefixed.matches(OBJ)
    bare = parse_condition("object.status.phase == 'Pending'", "success_condition")
    assert isinstance(bare, CelCondition) and not bare.matches(OBJ)
    for condition in (argo, prefixed, bare):
        assert isinstance(condition, Condition)


def test_any_of_is_ignored_for_cel() -> None:
    condition = parse_condition("cel: object.status.count > 1", "failure_condition", any_of=True)
    assert isinstance(condition, CelCondition)
    assert condition.matches(OBJ)


# --- evaluate -------------------------------------------------------------------


def test_neither_condition_succeeds_immediately() -> None:
    verdict, reason = evaluate(OBJ, None, None)
    assert verdict is Verdict.SUCCEEDED
    assert "no success or failure condition" in reason


def test_success_requirements_are_anded() -> None:
    success, failure = parse_conditions("status.phase=Running,status.readyToUse=true", None)
    assert evaluate(OBJ, success, failure)[0] is Verdict.SUCCEEDED
    success, failure = parse_conditions("status.phase=Running,status.bound=true", None)
    verdict, reason = evaluate(OBJ, success, failure)
    assert verdict is Verdict.PENDING
    assert "'status.bound=true' is false" in reason
    assert "status.bound is 'false'" in reason
    assert "status.phase=Running' is false" not in reason


def test_failure_requirements_are_ored() -> None:
    success, failure = parse_conditions("status.phase=Succeeded", "status.phase=Failed,status.count>5")
    assert isinstance(failure, Selector) and failure.any_of
    verdict, reason = evaluate(OBJ, success, failure)
    assert verdict is Verdict.FAILED
    assert "failure_condition requirement 'status.count>5' matched" in reason
    assert "status.count is '10'" in reason


def test_failure_and_semantics_only_when_asked() -> None:
    failure = parse_condition("status.phase=Failed,status.count>5", "failure_condition")
    assert isinstance(failure, Selector) and not failure.any_of
    success = parse_condition("status.phase=Running", "success_condition")
    assert evaluate(OBJ, success, failure)[0] is Verdict.SUCCEEDED
    assert evaluate(OBJ, success, failure.with_any_of(True))[0] is Verdict.FAILED


def test_failure_is_checked_before_success() -> None:
    success, failure = parse_conditions("status.phase=Running", "status.readyToUse=true")
    assert evaluate(OBJ, success, failure)[0] is Verdict.FAILED


def test_no_failure_match_and_success_pending() -> None:
    success, failure = parse_conditions("status.phase=Succeeded", "status.phase=Failed")
    verdict, reason = evaluate(OBJ, success, failure)
    assert verdict is Verdict.PENDING
    assert "status.phase is 'Running'" in reason


def test_only_failure_condition_first_non_failure_is_success() -> None:
    _, failure = parse_conditions(None, "status.phase=Failed")
    verdict, reason = evaluate(OBJ, None, failure)
    assert verdict is Verdict.SUCCEEDED
    assert "no success condition" in reason
    failed = {"status": {"phase": "Failed"}}
    assert evaluate(failed, None, failure)[0] is Verdict.FAILED


def test_only_failure_condition_on_missing_field_is_success() -> None:
    _, failure = parse_conditions("", "status.error")
    assert evaluate({}, None, failure)[0] is Verdict.SUCCEEDED
    assert evaluate({"status": {"error": {"message": "boom"}}}, None, failure)[0] is Verdict.FAILED


def test_mixed_languages() -> None:
    success, failure = parse_conditions(
        "cel: object.status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')",
        "status.phase=Failed",
    )
    assert evaluate(OBJ, success, failure)[0] is Verdict.SUCCEEDED


def test_requirement_is_usable_directly() -> None:
    requirement = Requirement("status.phase", Operator.IN, ("Running", "Pending"))
    assert requirement.matches(OBJ)
    assert str(requirement) == "status.phase in (Running,Pending)"
    assert requirement.describe({}) == "status.phase is missing"

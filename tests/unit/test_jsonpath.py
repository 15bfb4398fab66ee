"""kubectl-style JSONPath extraction for attribute_outputs."""

from __future__ import annotations

from typing import Any

import pytest

from k8s_step_operator.steps.jsonpath import JsonPathError, extract, validate_jsonpath

OBJ: dict[str, Any] = {
    "metadata": {
        "name": "pvc-1",
        "labels": {"app.kubernetes.io/name": "web", "where": "here", "#x": "hash"},
    },
    "spec": {"replicas": 0, "paused": False, "note": "", "extra": None, "resources": {"cpu": "1"}},
    "status": {
        "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "Complete", "status": "False"},
        ],
    },
    "items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}],
    "single": [{"metadata": {"name": "only"}}],
}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("{.metadata.name}", "pvc-1"),
        (".metadata.name", "pvc-1"),
        ("metadata.name", "pvc-1"),
        ("{ .metadata.name }", "pvc-1"),
        ("{$.metadata.name}", "pvc-1"),
        ("{.status.conditions[0].type}", "Ready"),
        ("{.status.conditions[-1].type}", "Complete"),
        ("status.conditions[1].status", "False"),
        ('{.status.conditions[?(@.type=="Ready")].status}', "True"),
        ("{.status.conditions[?(@.type=='Complete')].status}", "False"),
        ('{.status.conditions[?(@.type!="Ready")].type}', "Complete"),
        (r"{.metadata.labels.app\.kubernetes\.io/name}", "web"),
        ("{.metadata.labels['app.kubernetes.io/name']}", "web"),
        ("{.metadata.labels.where}", "here"),  # a jsonpath-ng keyword as a field name
        ("{.metadata.labels.#x}", "hash"),  # kubectl allows any character in a name
        ("{.single[*].metadata.name}", "only"),  # one match: the value itself
    ],
)
def test_single_match_returns_the_value(expr: str, expected: Any) -> None:
    assert extract(OBJ, expr, "attribute_outputs['x']") == expected


def test_several_matches_return_a_list() -> None:
    assert extract(OBJ, "{.items[*].metadata.name}") == ["a", "b"]
    assert extract(OBJ, "{.status.conditions[*].type}") == ["Ready", "Complete"]


def test_containers_are_returned_as_python_values() -> None:
    assert extract(OBJ, "{.spec.resources}") == {"cpu": "1"}
    assert extract(OBJ, "{.status.conditions[0]}") == {"type": "Ready", "status": "True"}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [("{.spec.replicas}", 0), ("{.spec.paused}", False), ("{.spec.note}", ""), ("{.spec.extra}", None)],
)
def test_falsy_values_are_matches(expr: str, expected: Any) -> None:
    assert extract(OBJ, expr) == expected
    assert extract(OBJ, expr, default="DEFAULT") == expected


@pytest.mark.parametrize(
    "expr",
    [
        "{.metadata.missing}",
        "{.status.conditions[5].type}",
        '{.status.conditions[?(@.type=="Nope")].status}',
        "{.items[*].metadata.missing}",
    ],
)
def test_no_match_raises_naming_field_and_expression(expr: str) -> None:
    with pytest.raises(JsonPathError) as info:
        extract(OBJ, expr, "attribute_outputs['size']")
    message = str(info.value)
    assert message.startswith("attribute_outputs['size']: ")
    assert repr(expr) in message
    assert "matched nothing" in message


def test_default_is_returned_on_no_match() -> None:
    assert extract(OBJ, "{.metadata.missing}", default="") == ""
    assert extract(OBJ, "{.metadata.missing}", default=None) is None


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("", "empty"),
        ("{}", "empty"),
        ("{.metadata.name", "missing closing '}'"),
        ("{.a}{.b}", "only a single"),
        ("name={.metadata.name}", "text around"),
        ("{.metadata.name}x", "text around"),
        ("{range .items[*]}{.x}{end}", "only a single"),
        ("range .items[*]", "'range' templates"),
        (".a[", "missing closing ']'"),
        (".a[]", "empty '[]'"),
        (".a.", "expected a field name"),
        ("{.a b}", "unexpected ' '"),
        ("{.a[?(@.x==)]}", "invalid JSONPath"),
        ("{.a[?(@.x=='y']}", "missing closing ']'"),
        (".a[1:2:3:4]", "invalid JSONPath"),
        ("{.a(b)}", "unexpected '('"),
    ],
)
def test_invalid_expressions_fail_validation(expr: str, fragment: str) -> None:
    with pytest.raises(JsonPathError) as info:
        validate_jsonpath(expr, "attribute_outputs['out']")
    message = str(info.value)
    assert message.startswith(f"attribute_outputs['out']: cannot parse JSONPath {expr!r}")
    assert fragment in message


def test_error_position_points_into_the_original_text() -> None:
    with pytest.raises(JsonPathError, match="at position 7$"):
        validate_jsonpath("  { .a b }", "f")


def test_valid_expressions_pass_validation() -> None:
    for expr in ("{.metadata.name}", "metadata.name", '{.status.conditions[?(@.type=="Ready")].status}'):
        validate_jsonpath(expr, "f")


def test_extract_validates_too() -> None:
    with pytest.raises(JsonPathError, match="^attribute_outputs: cannot parse"):
        extract(OBJ, "{.a}{.b}")

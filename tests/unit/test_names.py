"""Tests for k8s_step_operator.names."""

import hashlib
import uuid

import pytest

from k8s_step_operator.names import dns1123_label, label_value, pod_name
from k8s_step_operator.validation import validate_dns1123_label, validate_label_value


def _hash8(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("trainer", "trainer"),
        ("My_Step Name!", "my-step-name"),
        ("--a..b--", "a-b"),
        ("a--b", "a--b"),
    ],
)
def test_dns1123_label_sanitizes(text, expected):
    assert dns1123_label(text) == expected


def test_dns1123_label_shortens_with_hash_of_original():
    text = "Step_" + "x" * 100
    name = dns1123_label(text)
    assert len(name) == 63
    assert name.endswith("-" + _hash8(text))
    validate_dns1123_label(name, "n")


def test_long_names_differing_only_at_tail_stay_distinct():
    a, b = "s" * 99 + "a", "s" * 99 + "b"
    assert dns1123_label(a) != dns1123_label(b)
    assert len(dns1123_label(a)) <= 63 and len(dns1123_label(b)) <= 63
    assert label_value(a) != label_value(b)
    assert len(label_value(a)) <= 63


def test_dns1123_label_respects_max_len_and_unusable_text():
    assert len(dns1123_label("a" * 40, max_len=20)) == 20
    assert dns1123_label("___") == _hash8("___")
    validate_dns1123_label(dns1123_label("___"), "n")


def test_label_value_keeps_case_and_allowed_punctuation():
    assert label_value("My_Run.2024-01") == "My_Run.2024-01"
    assert label_value("a b/c") == "a-b-c"
    assert label_value("_x_") == "x"
    assert label_value("") == ""


def test_label_value_shortened_is_valid():
    value = label_value("Run_" + "y" * 80 + "._")
    assert len(value) <= 63
    validate_label_value(value, "v")


def test_pod_name_unique_per_step_run_and_valid():
    run_a, run_b = str(uuid.uuid4()), str(uuid.uuid4())
    first = pod_name(None, "training_pipeline", "trainer", run_a)
    second = pod_name(None, "training_pipeline", "trainer", run_b)
    assert first != second
    assert first.startswith("training-pipeline-trainer-")
    assert first.endswith(uuid.UUID(run_a).hex[:10])
    validate_dns1123_label(first, "n")


def test_pod_name_with_prefix_and_long_step_names():
    run = str(uuid.uuid4())
    a = pod_name("Team-X", "p" * 50, "s" * 99 + "a", run)
    b = pod_name("Team-X", "p" * 50, "s" * 99 + "b", run)
    assert a != b
    assert a.startswith("team-x-")
    for name in (a, b):
        assert len(name) <= 63
        validate_dns1123_label(name, "n")


def test_pod_name_accepts_non_uuid_ids():
    assert pod_name(None, "p", "s", "run-1") != pod_name(None, "p", "s", "run-2")

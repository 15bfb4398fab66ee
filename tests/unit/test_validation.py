"""Tests for k8s_step_operator.validation."""

from decimal import Decimal

import pytest
from kubernetes.client import V1PersistentVolumeClaimVolumeSource, V1Toleration, V1Volume
from kubernetes.utils import parse_quantity as kube_parse_quantity

from k8s_step_operator.validation import (
    parse_quantity,
    quantity_sign,
    to_api_dict,
    validate_annotation_key,
    validate_annotations,
    validate_choice,
    validate_dns1123_label,
    validate_dns1123_subdomain,
    validate_label_key,
    validate_label_value,
    validate_labels,
    validate_quantity,
)

from .test_flavor_import import kubernetes_modules_loaded_by

GI = 1024**3


@pytest.mark.parametrize(
    "text, expected",
    [
        ("4Gi", Decimal(4 * GI)),
        ("1.5Gi", Decimal("1.5") * GI),
        ("500m", Decimal("0.5")),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("2", Decimal(2)),
        ("2k", Decimal(2000)),
        ("1Ki", Decimal(1024)),
        ("1E", Decimal(10) ** 18),
        (".5", Decimal("0.5")),
        ("+1M", Decimal(10) ** 6),
        ("-1Gi", Decimal(-GI)),
        ("12e-3", Decimal("0.012")),
    ],
)
def test_parse_quantity(text, expected):
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    "text", ["4Gx", "", "Gi", "1 Gi", "1.2.3", "1e", "1ki", "1GiB", "0x10", " 1"]
)
def test_parse_quantity_rejects_bad_grammar(text):
    with pytest.raises(ValueError, match="not a valid quantity"):
        parse_quantity(text)


@pytest.mark.parametrize(
    "text", ["1e3", "1E3", "0.5", ".5", "1.", "500m", "+.5m", "1Gi", "1.5Ei", "-1Gi", "-0", "2k", "1E", "12e-3", "1e-9"]
)
def test_the_official_parser_agrees_on_every_form_the_grammar_accepts(text):
    assert parse_quantity(text) == kube_parse_quantity(text)


@pytest.mark.parametrize("text", [" 1", "1 ", "1_000", "NaN", "Infinity", "1e3Gi", "1n", "1u"])
def test_text_only_the_official_parser_takes_is_refused(text):
    # kubernetes.utils.parse_quantity is lenient (Decimal's own syntax, n/u suffixes): our grammar is the gate
    kube_parse_quantity(text)
    with pytest.raises(ValueError, match="not a valid quantity"):
        parse_quantity(text)


def test_an_exponent_beyond_decimal_range_is_refused():
    with pytest.raises(ValueError, match="exponent out of range"):
        parse_quantity("1e1000000")


@pytest.mark.parametrize(
    "text, sign", [("0", 0), ("-0.0", 0), ("0Gi", 0), ("+0e5", 0), ("0.001m", 1), ("-.5", -1), ("3e-2", 1)]
)
def test_quantity_sign(text, sign):
    assert quantity_sign(text) == sign
    assert (parse_quantity(text) > 0) - (parse_quantity(text) < 0) == sign


def test_checking_a_quantity_does_not_load_the_kubernetes_client():
    # settings are validated in every step's pod; the client costs about half a second to import
    code = "from k8s_step_operator.validation import validate_quantity\nvalidate_quantity('512Mi', 'x')\n"
    assert kubernetes_modules_loaded_by(code) == []


def test_validate_quantity_names_field_and_allowed_suffixes():
    with pytest.raises(ValueError) as err:
        validate_quantity("4Gx", "resources.requests['memory']")
    message = str(err.value)
    assert message.startswith("resources.requests['memory']: '4Gx'")
    assert "Ki, Mi, Gi" in message and "500m" in message


def test_validate_quantity_negative_only_when_allowed():
    with pytest.raises(ValueError, match=r"^size: '-1Gi' is negative; only"):
        validate_quantity("-1Gi", "size")
    assert validate_quantity("-1Gi", "size", allow_negative=True) == "-1Gi"


def test_validate_quantity_accepts_numbers_but_not_bools():
    assert validate_quantity(2, "cpu") == "2"
    assert validate_quantity(0.5, "cpu") == "0.5"
    with pytest.raises(ValueError, match="^cpu: got bool"):
        validate_quantity(True, "cpu")


@pytest.mark.parametrize(
    "key",
    [
        "app",
        "example.com/team",
        "a_b.c-D",
        "x" * 63,
        "kubernetes.io/arch",
        ("a" * 63 + ".") * 3 + "b" * 61 + "/name",
    ],
)
def test_label_key_valid(key):
    assert validate_label_key(key, "labels") == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "-a",
        "a-",
        "bad key",
        "Example.com/x",
        "/x",
        "x/",
        "x" * 64,
        "a" * 254 + "/x",
        "a/b/c",
    ],
)
def test_label_key_invalid(key):
    with pytest.raises(ValueError) as err:
        validate_label_key(key, "pod_settings.labels")
    assert str(err.value).startswith("pod_settings.labels: ")
    assert "optional DNS-1123 subdomain prefix" in str(err.value)


def test_annotation_keys_are_case_insensitive_unlike_label_keys():
    assert validate_annotation_key("Example.COM/Team", "a") == "Example.COM/Team"
    with pytest.raises(ValueError):
        validate_label_key("Example.COM/Team", "l")


@pytest.mark.parametrize("value", ["", "x", "A_b.c-9", "v" * 63])
def test_label_value_valid(value):
    assert validate_label_value(value, "v") == value


@pytest.mark.parametrize("value", ["bad value!", "-x", "x_", "v" * 64, 3])
def test_label_value_invalid(value):
    with pytest.raises(ValueError, match=r"^labels\['k'\]: "):
        validate_label_value(value, "labels['k']")


def test_validate_labels_names_the_entry():
    with pytest.raises(ValueError) as err:
        validate_labels({"ok": "fine", "team": "data science"}, "labels")
    assert str(err.value).startswith("labels['team']: 'data science'")
    assert "allowed: empty, or at most 63" in str(err.value)


def test_validate_annotations_total_size():
    assert validate_annotations({"a": "x" * 1000}, "ann") == {"a": "x" * 1000}
    with pytest.raises(ValueError, match=r"^ann: annotations total .* at most 262144"):
        validate_annotations({"a": "x" * (256 * 1024)}, "ann")
    with pytest.raises(ValueError, match=r"^ann\['a'\]: expected a string"):
        validate_annotations({"a": 1}, "ann")


@pytest.mark.parametrize("name", ["abc", "a-1", "1a", "x" * 63])
def test_dns1123_label_valid(name):
    assert validate_dns1123_label(name, "n") == name


@pytest.mark.parametrize("name", ["Abc", "a_b", "a.b", "-a", "a-", "", "x" * 64])
def test_dns1123_label_invalid(name):
    with pytest.raises(ValueError, match=r"^ns: .* DNS-1123 label; it must be at most 63"):
        validate_dns1123_label(name, "ns")


def test_dns1123_subdomain():
    assert validate_dns1123_subdomain("a.b-c.d", "s") == "a.b-c.d"
    for bad in ["a..b", "A.b", "a." , "x" * 254]:
        with pytest.raises(ValueError, match="^s: .* DNS-1123 subdomain"):
            validate_dns1123_subdomain(bad, "s")


def test_validate_choice_lists_allowed():
    with pytest.raises(ValueError, match=r"^f: 'x' is not allowed; allowed: a, b$"):
        validate_choice("x", "f", ["b", "a"])


def test_to_api_dict_snake_and_camel_case_are_equivalent():
    snake = {"name": "d", "persistent_volume_claim": {"claim_name": "pvc", "read_only": True}}
    camel = {"name": "d", "persistentVolumeClaim": {"claimName": "pvc", "readOnly": True}}
    model = V1Volume(
        name="d",
        persistent_volume_claim=V1PersistentVolumeClaimVolumeSource(
            claim_name="pvc", read_only=True
        ),
    )
    expected = camel
    assert to_api_dict(snake, "V1Volume", "v") == expected
    assert to_api_dict(camel, "V1Volume", "v") == expected
    assert to_api_dict(model, "V1Volume", "v") == expected


def test_to_api_dict_unknown_field_lists_allowed_snake_names():
    with pytest.raises(ValueError) as err:
        to_api_dict([{"key": "a", "efect": "x"}], "list[V1Toleration]", "pod_settings.tolerations")
    assert str(err.value) == (
        "pod_settings.tolerations[0].efect: unknown field; allowed: effect, "
        "key, operator, toleration_seconds, value"
    )


def test_to_api_dict_keeps_map_keys_verbatim():
    result = to_api_dict(
        {"node_selector": {"my_label": "v"}, "overhead": {"cpu": "1"}}, "V1PodSpec", "s"
    )
    assert result == {"nodeSelector": {"my_label": "v"}, "overhead": {"cpu": "1"}}


def test_to_api_dict_rejects_wrong_types_and_duplicates():
    with pytest.raises(ValueError, match=r"^t\[0\]\.tolerationSeconds: expected int, got str"):
        to_api_dict([{"tolerationSeconds": "30"}], "list[V1Toleration]", "t")
    with pytest.raises(ValueError, match=r"^t\[0\]\.toleration_seconds: expected int, got bool"):
        to_api_dict([{"toleration_seconds": True}], "list[V1Toleration]", "t")
    with pytest.raises(ValueError, match=r"given twice"):
        to_api_dict({"claim_name": "a", "claimName": "b"}, "V1PersistentVolumeClaimVolumeSource", "p")
    with pytest.raises(ValueError, match=r"^t: expected a list"):
        to_api_dict({"key": "a"}, "list[V1Toleration]", "t")


def test_to_api_dict_none_dropped_unless_kept():
    assert to_api_dict({"key": "a", "value": None}, "V1Toleration", "t") == {"key": "a"}
    assert to_api_dict(
        {"key": "a", "value": None}, "V1Toleration", "t", keep_none=True
    ) == {"key": "a", "value": None}
    spec = {"node_selector": {"pool": None}}
    assert to_api_dict(spec, "V1PodSpec", "s", keep_none=True) == {"nodeSelector": {"pool": None}}
    with pytest.raises(ValueError, match=r"^s.node_selector\['pool'\]: expected str, got NoneType"):
        to_api_dict(spec, "V1PodSpec", "s")


def test_to_api_dict_model_objects_nested_in_dicts():
    result = to_api_dict(
        {"tolerations": [V1Toleration(key="gpu", toleration_seconds=5)]}, "V1PodSpec", "s"
    )
    assert result == {"tolerations": [{"key": "gpu", "tolerationSeconds": 5}]}

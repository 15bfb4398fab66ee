"""Tests for k8s_step_operator.merge.deep_merge."""

import copy

from k8s_step_operator.merge import deep_merge


def test_maps_merge_recursively():
    base = {"a": {"b": 1, "c": {"d": 2}}, "keep": True}
    override = {"a": {"c": {"e": 3}, "f": 4}}
    assert deep_merge(base, override) == {
        "a": {"b": 1, "c": {"d": 2, "e": 3}, "f": 4},
        "keep": True,
    }


def test_inputs_are_not_mutated_and_result_shares_no_state():
    base = {"spec": {"containers": [{"name": "main", "env": [{"name": "A"}]}]}}
    override = {"spec": {"containers": [{"name": "main", "args": ["x"]}], "new": {"k": [1]}}}
    base_copy, override_copy = copy.deepcopy(base), copy.deepcopy(override)
    result = deep_merge(base, override)
    assert base == base_copy and override == override_copy
    result["spec"]["containers"][0]["env"].append({"name": "B"})
    result["spec"]["new"]["k"].append(2)
    assert base == base_copy and override == override_copy


def test_named_lists_merge_by_name_keeping_order_and_appending_new():
    base = {
        "containers": [
            {"name": "main", "image": "a", "env": [{"name": "X", "value": "1"}]},
            {"name": "side", "image": "s"},
        ]
    }
    override = {
        "containers": [
            {"name": "extra", "image": "e"},
            {"name": "main", "env": [{"name": "X", "value": "2"}, {"name": "Y", "value": "3"}]},
        ]
    }
    assert deep_merge(base, override)["containers"] == [
        {
            "name": "main",
            "image": "a",
            "env": [{"name": "X", "value": "2"}, {"name": "Y", "value": "3"}],
        },
        {"name": "side", "image": "s"},
        {"name": "extra", "image": "e"},
    ]


def test_unnamed_lists_and_scalars_replace():
    base = {"tolerations": [{"key": "a"}], "command": ["x", "y"], "n": 1}
    override = {"tolerations": [{"key": "b"}], "command": ["z"], "n": 2}
    assert deep_merge(base, override) == override


def test_mixed_named_and_unnamed_items_replace():
    base = {"l": [{"name": "a"}, {"name": "b"}]}
    override = {"l": [{"name": "a", "x": 1}, {"other": 2}]}
    assert deep_merge(base, override)["l"] == [{"name": "a", "x": 1}, {"other": 2}]


def test_duplicate_names_fall_back_to_replace():
    base = {"volumeMounts": [{"name": "v", "mountPath": "/a"}, {"name": "v", "mountPath": "/b"}]}
    override = {"volumeMounts": [{"name": "v", "mountPath": "/c"}]}
    assert deep_merge(base, override)["volumeMounts"] == [{"name": "v", "mountPath": "/c"}]


def test_empty_override_list_clears():
    assert deep_merge({"env": [{"name": "A"}]}, {"env": []}) == {"env": []}


def test_none_removes_key_at_any_depth():
    base = {"a": 1, "b": {"c": 2, "d": 3}, "l": [{"name": "m", "resources": {"x": 1}}]}
    override = {"a": None, "b": {"c": None}, "l": [{"name": "m", "resources": None}], "z": None}
    assert deep_merge(base, override) == {"b": {"d": 3}, "l": [{"name": "m"}]}


def test_type_mismatch_replaces():
    assert deep_merge({"a": {"b": 1}}, {"a": [1]}) == {"a": [1]}
    assert deep_merge({"a": [1]}, {"a": {"b": 1}}) == {"a": {"b": 1}}

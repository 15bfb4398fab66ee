"""The resource-step actions table is the one place an action is described: validation, the runtime, rbac and
the CLI all follow it, so a row added there is accepted, performed, granted and offered everywhere."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from k8s_step_operator import rbac
from k8s_step_operator.cli import main
from k8s_step_operator.kube.client import APPLY_CONTENT_TYPE, PATCH_CONTENT_TYPES
from k8s_step_operator.steps.actions import ACTIONS, RESTRICTED_OPTIONS, option_error
from k8s_step_operator.steps.resource_spec import (
    RESOURCE_OPTIONS,
    Action,
    MergeStrategy,
    ResourceSpecError,
    StepOptions,
    build_resource_spec,
)

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1"}}
# each restricted option given, as build_resource_spec takes it
GIVEN: dict[str, dict[str, Any]] = {
    "merge_strategy": {"merge_strategy": "merge"},
    "k8s_resource.metadata.generateName": {
        "k8s_resource": {**CM, "metadata": {"generateName": "cm-"}},
    },
    "force": {"force": True},
    "cleanup": {"cleanup": "on-run-end"},
    "set_owner_reference": {"set_owner_reference": {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner"}},
    "wait_for_deletion": {"wait_for_deletion": True},
}


def spec_of(action: str, **options: Any) -> Any:
    shared = RESOURCE_OPTIONS.with_arguments(options)  # what every kind shares goes in as StepOptions
    rest = {k: v for k, v in options.items() if k not in {f.name for f in dataclasses.fields(StepOptions)}}
    return build_resource_spec(**{"k8s_resource": CM, "action": action, **rest}, options=shared)


def test_every_part_offers_exactly_the_tables_actions() -> None:
    from k8s_step_operator.steps.resource_runtime import PERFORM

    names = list(ACTIONS)
    assert [a.value for a in Action] == names  # the enum keeps its members in the table's order
    assert set(PERFORM) == set(names)  # the runtime performs each
    assert rbac.ACTIONS == tuple(names)
    choices = next(p for p in main.commands["rbac"].params if p.name == "actions").type.choices  # type: ignore[attr-defined]
    assert list(choices) == names
    assert set(GIVEN) == set(RESTRICTED_OPTIONS)


@pytest.mark.parametrize("name", list(ACTIONS))
def test_each_row_is_accepted_by_validation_with_each_of_its_options(name: str) -> None:
    row = ACTIONS[name]
    spec = spec_of(name)
    assert spec.action == name
    assert spec.output_names[0] == "name" and (len(spec.output_names) > 1) == row.waits
    if not row.needs_object:
        assert build_resource_spec(action=name, api_version="v1", kind="ConfigMap", resource_name="cm").body is None
    for option in row.options:
        assert spec_of(name, **GIVEN[option]).action == name, option


@pytest.mark.parametrize("name", list(ACTIONS))
def test_options_of_other_actions_are_refused_naming_the_field_and_the_actions(name: str) -> None:
    for option in set(RESTRICTED_OPTIONS) - set(ACTIONS[name].options):
        with pytest.raises(ResourceSpecError) as refused:
            spec_of(name, **GIVEN[option])
        allowed = [n for n, row in ACTIONS.items() if option in row.options]
        assert str(refused.value) == option_error(option, name)
        assert str(refused.value).startswith(f"{option}: only used with action")
        assert all(repr(n) in str(refused.value) for n in allowed) and str(refused.value).endswith(f"got action={name!r}")


@pytest.mark.parametrize("name", list(ACTIONS))
def test_each_row_is_granted_what_its_request_needs(name: str) -> None:
    row = ACTIONS[name]
    assert row.rbac_verbs and row.why.startswith(f"action {name}: ")
    path = "/api/v1/namespaces/ml/configmaps" + ("" if row.on_collection else "/cm")
    assert rbac.request_access(row.method, path).verb in row.rbac_verbs
    perms = rbac.resource_step_permissions(["configmaps"], [name])
    access = rbac.Access(rbac.request_access(row.method, path).verb, "", "configmaps", "", "ml")
    assert rbac.allows(perms, access, "ml")
    for verb in row.rbac_verbs:
        assert rbac.allows(perms, rbac.Access(verb, "", "configmaps", "", "ml"), "ml")
    if row.waits:  # conditions: read and watch the object
        assert all(rbac.allows(perms, rbac.Access(v, "", "configmaps", "", "ml"), "ml") for v in rbac.WAIT_VERBS)


def test_content_types_are_the_clients() -> None:
    assert ACTIONS["patch"].content_types == PATCH_CONTENT_TYPES
    assert set(PATCH_CONTENT_TYPES) == {s.value for s in MergeStrategy}
    assert ACTIONS["apply"].content_types == {"": APPLY_CONTENT_TYPE}
    assert not ACTIONS["get"].content_types


def test_messages_for_bad_input_still_name_the_field_and_the_allowed_values() -> None:
    with pytest.raises(ResourceSpecError, match=r"^action: 'upsert' is not allowed; allowed: get, create, apply, delete, "):
        spec_of("upsert")
    assert option_error("cleanup", "get") == (
        "cleanup: only used with action 'create' or 'apply' (objects a step creates); got action='get'"
    )
    with pytest.raises(ResourceSpecError, match=r"^success_condition: not allowed with action='delete' \(a delete step"):
        spec_of("delete", success_condition="status.phase==Bound")

"""The resource steps' Executor on the kube client: typed errors become the step errors users read."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client as k8s
from urllib3.exceptions import ProtocolError

from k8s_step_operator.steps.cluster import Cluster
from k8s_step_operator.steps.discovery import ApiResource
from k8s_step_operator.steps.errors import Forbidden, ResourceStepError
from k8s_step_operator.steps.resource_runtime import Executor
from k8s_step_operator.steps.resource_spec import RUN_ID_LABEL

from ..api_fakes import refusal

CM = ApiResource("v1", "ConfigMap", "configmaps", True)
WIDGET = ApiResource("example.com/v1", "Widget", "widgets", True)
PATH = "/api/v1/namespaces/ml/configmaps"


class Resp:
    def __init__(self, payload: Any) -> None:
        self.data = json.dumps(payload).encode()

    def release_conn(self) -> None:
        pass


@pytest.fixture
def executor(mocker: Any) -> Executor:
    api = k8s.ApiClient(k8s.Configuration(host="https://fake"))
    mocker.patch.object(api, "call_api")
    mocker.patch("k8s_step_operator.kube.retry.time.sleep")
    return Executor(Cluster(api, "ml", "test"))


def answer(executor: Executor, *answers: Any) -> Any:
    mock = executor.cluster.api.call_api
    mock.side_effect = [a if isinstance(a, BaseException) else Resp(a) for a in answers]
    return mock


def methods(mock: Any) -> list[tuple[str, str]]:
    return [(c.args[1], c.args[0]) for c in mock.call_args_list]


def mine(run_id: str = "run-1") -> dict[str, Any]:
    return {"metadata": {"name": "a", "labels": {RUN_ID_LABEL: run_id}}}


def test_get_of_a_missing_object(executor: Executor) -> None:
    answer(executor, refusal(404, "NotFound"))
    with pytest.raises(ResourceStepError, match=r"^ConfigMap ml/a not found$"):
        executor.get(CM, "ml", "a")


def test_create_taken_name(executor: Executor) -> None:
    answer(executor, refusal(409, "AlreadyExists"))
    with pytest.raises(ResourceStepError, match=r"^ConfigMap ml/a already exists; use action='apply'"):
        executor.create(CM, "ml", mine())


def test_a_retried_create_accepts_its_own_object_only(executor: Executor) -> None:
    mock = answer(executor, refusal(504, "Timeout"), refusal(409, "AlreadyExists"), mine())
    assert executor.create(CM, "ml", mine()) == mine()
    assert methods(mock) == [("POST", PATH), ("POST", PATH), ("GET", f"{PATH}/a")]
    answer(executor, refusal(504, "Timeout"), refusal(409, "AlreadyExists"), mine("another-run"))
    with pytest.raises(ResourceStepError, match="already exists"):
        executor.create(CM, "ml", mine())
    answer(executor, ProtocolError("reset"))  # a POST that may have been done is not sent again
    with pytest.raises(ProtocolError):
        executor.create(CM, "ml", mine())


def test_a_forbidden_create_names_the_permission(executor: Executor) -> None:
    denied = 'configmaps is forbidden: User "u" cannot create resource "configmaps" in API group "" in the namespace "ml"'
    answer(executor, refusal(403, "Forbidden", denied))
    with pytest.raises(Forbidden, match=r"^forbidden: needs create on configmaps in namespace ml for u"):
        executor.create(CM, "ml", mine())


def test_other_refusals_name_the_object_verb_and_status(executor: Executor) -> None:
    answer(executor, refusal(422, "Invalid", "data: Invalid value"))
    with pytest.raises(ResourceStepError, match=r"^ConfigMap ml/a: create failed \(HTTP 422\): data: Invalid value$"):
        executor.create(CM, "ml", mine())


def test_apply_conflict_suggests_force(executor: Executor) -> None:
    answer(executor, refusal(409, "Conflict", "Apply failed with 1 conflict"))
    with pytest.raises(ResourceStepError, match="set force=True to take the fields over. Server said: Apply failed"):
        executor.apply(CM, "ml", mine(), force=False)


def test_replace_rereads_after_a_conflict(executor: Executor) -> None:
    current = {"metadata": {"name": "a", "resourceVersion": "1"}}
    mock = answer(executor, current, refusal(409, "Conflict"), {**current, "metadata": {"resourceVersion": "2"}}, mine())
    assert executor.replace(CM, "ml", mine()) == mine()
    assert methods(mock) == [("GET", f"{PATH}/a"), ("PUT", f"{PATH}/a"), ("GET", f"{PATH}/a"), ("PUT", f"{PATH}/a")]
    assert mock.call_args.kwargs["body"]["metadata"]["resourceVersion"] == "2"
    answer(executor, refusal(404, "NotFound"))
    with pytest.raises(ResourceStepError, match="not found; replace needs an existing object"):
        executor.replace(CM, "ml", mine())


def test_patch_of_a_missing_object_and_an_unsupported_flavour(executor: Executor) -> None:
    answer(executor, refusal(404, "NotFound"))
    with pytest.raises(ResourceStepError, match=r"^ConfigMap ml/a not found; patch needs an existing object$"):
        executor.patch(CM, "ml", "a", {"data": {}}, "merge")
    answer(executor, refusal(404, "NotFound"), refusal(415, "UnsupportedMediaType"))  # no CRD: a built-in kind
    with pytest.raises(ResourceStepError, match=r"^merge_strategy: 'strategic' is not supported for Widget"):
        executor.patch(WIDGET, "ml", "a", {"spec": {}}, "strategic")


def test_strategic_merge_on_a_custom_resource_is_refused_before_sending(executor: Executor) -> None:
    mock = answer(executor, {"kind": "CustomResourceDefinition"})
    with pytest.raises(ResourceStepError, match="allowed for custom resources: merge, json"):
        executor.patch(WIDGET, "ml", "a", {"spec": {}}, "strategic")
    assert methods(mock) == [("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")]


def test_delete_ignores_a_missing_object_and_one_replaced_meanwhile(executor: Executor) -> None:
    answer(executor, refusal(404, "NotFound"))
    assert executor.delete(CM, "ml", "a", "Background") is None
    mock = answer(executor, refusal(409, "Conflict", "Precondition failed: UID in precondition: u-1"))
    assert executor.delete(CM, "ml", "a", "Background", uid="u-1") is None
    assert mock.call_args.kwargs["body"] == {
        "kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background", "preconditions": {"uid": "u-1"}
    }
    answer(executor, refusal(409, "Conflict"))
    with pytest.raises(ResourceStepError, match=r"delete failed \(HTTP 409\)"):
        executor.delete(CM, "ml", "a", "Background")

"""A resource pool's allocation applied to the step's settings (pure), as ZenML 0.98 applies it."""

from types import SimpleNamespace

import pytest

from k8s_step_operator import allocation
from k8s_step_operator.allocation import Allocation
from k8s_step_operator.settings import K8sStepOperatorSettings


@pytest.mark.parametrize(
    "items, expected",
    [
        ([Allocation("cpu", 2)], {"cpu": "2"}),
        ([Allocation("cpu", 500)], {"cpu": "500m"}),  # no unit and large: millicores, as ZenML
        ([Allocation("cpu", 1500, "m")], {"cpu": "1500m"}),
        ([Allocation("cpu", 1), Allocation("cpu", 500, "m")], {"cpu": "1500m"}),
        ([Allocation("memory", 2, "GiB")], {"memory": "2048Mi"}),
        ([Allocation("memory", 300)], {"memory": "300Mi"}),  # no unit: MiB
        ([Allocation("memory", 1, "GB")], {"memory": "954Mi"}),  # rounded up
        ([Allocation("gpu", 1), Allocation("gpu", 1)], {"nvidia.com/gpu": "2"}),
        ([Allocation("widgets", 3)], {}),
    ],
)
def test_granted_resources(items, expected):
    assert allocation.granted_resources(items) == expected


def test_unknown_memory_unit_is_named():
    with pytest.raises(ValueError, match="memory unit 'parsecs' is not supported; allowed: b, gb, gib"):
        allocation.granted_resources([Allocation("memory", 1, "parsecs")])


def _request(allocations, component_settings=None, pool="gpus"):
    resources = SimpleNamespace(allocations=allocations, component_settings=component_settings or {})
    return SimpleNamespace(id="r-1", get_resources=lambda: resources, get_body=lambda: SimpleNamespace(pool_name=pool))


def test_apply_sets_requests_and_limits_and_component_overrides():
    settings = K8sStepOperatorSettings(
        pod_settings={"resources": {"requests": {"cpu": "4", "ephemeral-storage": "1Gi"}}}, startup_timeout=30
    )
    request = _request(
        [SimpleNamespace(resource_kind="gpu", quantity=1, unit=None), SimpleNamespace(resource_kind="cpu", quantity=2, unit=None)],
        {"service_account_name": "gpu-runner"},
    )
    applied = allocation.apply(settings, request)
    assert applied.service_account_name == "gpu-runner" and applied.startup_timeout == 30
    assert applied.pod_settings.resources == {
        "requests": {"cpu": "2", "ephemeral-storage": "1Gi", "nvidia.com/gpu": "1"},
        "limits": {"cpu": "2", "nvidia.com/gpu": "1"},
    }
    assert allocation.apply(settings, None) is settings


def test_invalid_component_overrides_name_the_pool():
    with pytest.raises(ValueError, match="resource pool 'gpus': its component settings .*startup_timeout"):
        allocation.apply(K8sStepOperatorSettings(), _request([], {"startup_timeout": -1}))

"""Which pods a resource step's object starts, and how their log lines are prefixed (pure)."""

from __future__ import annotations

import pytest

from k8s_step_operator.pod_status import started_containers
from k8s_step_operator.steps.resource_spec import ResourceSpec, StepOptions, build_resource_spec
from k8s_step_operator.steps.started_pods import log_label, pod_query

JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "train", "uid": "u-1"}}


def test_a_job_selects_its_pods_by_uid_and_a_pod_itself():
    assert pod_query(JOB) == {"labelSelector": "batch.kubernetes.io/controller-uid=u-1"}
    assert pod_query({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}) == {"fieldSelector": "metadata.name=p"}
    assert pod_query({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}) is None
    assert pod_query({"apiVersion": "example.com/v1", "kind": "Job", "metadata": {"name": "j", "uid": "u"}}) is None


def test_containers_are_followed_once_they_run_or_ran():
    pod = {"status": {
        "initContainerStatuses": [{"name": "init", "state": {"terminated": {"exitCode": 0}}}],
        "containerStatuses": [{"name": "main", "state": {"running": {}}}, {"name": "late", "state": {"waiting": {}}}],
    }}
    assert started_containers(pod) == ["init", "main"]
    assert started_containers({}) == []


@pytest.mark.parametrize("containers, init, first, expected", [
    (["main"], [], True, "make_job"),
    (["main", "side"], [], True, "make_job:side"),
    (["main"], ["setup"], True, "make_job:side"),
    (["main"], [], False, "make_job/pi-x7k2p"),
    (["main", "side"], [], False, "make_job/pi-x7k2p:side"),
])
def test_prefix_like_the_operator_steps(containers, init, first, expected):
    pod = {"metadata": {"name": "pi-x7k2p"},
           "spec": {"containers": [{"name": c} for c in containers], "initContainers": [{"name": c} for c in init]}}
    assert log_label("make_job", pod, "side", first) == expected


def test_stream_logs_is_on_by_default_and_kept_by_the_spec_codec():
    spec = build_resource_spec(JOB, options=StepOptions(success_condition="status.succeeded > 0"))
    assert spec.stream_logs is True
    off = build_resource_spec(JOB, options=StepOptions(success_condition="status.succeeded > 0"), stream_logs=False)
    assert ResourceSpec.from_dict(off.to_dict()).stream_logs is False


def test_resource_step_factory_takes_the_opt_out():
    from k8s_step_operator.steps import resource_step

    step = resource_step(JOB, success_condition="status.succeeded > 0", stream_logs=False)
    assert step is not None

"""Retries: which errors are transient, back-off, Retry-After."""

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from k8s_step_operator.kube import retry


def api_error(status, headers=None):
    exc = ApiException(status=status, reason="x")
    exc.headers = headers or {}
    return exc


def test_retries_transient_errors_then_succeeds(mocker):
    sleep = mocker.patch("k8s_step_operator.kube.retry.time.sleep")
    fn = mocker.Mock(side_effect=[api_error(503), ProtocolError("reset"), "ok"])
    policy = retry.RetryPolicy(max_retries=3, request_timeout=7)
    assert retry.call(fn, 1, policy=policy) == "ok"
    assert fn.call_count == 3
    assert sleep.call_count == 2
    assert fn.call_args.kwargs["_request_timeout"] == 7


def test_client_errors_are_not_retried(mocker):
    mocker.patch("k8s_step_operator.kube.retry.time.sleep")
    fn = mocker.Mock(side_effect=api_error(422))
    with pytest.raises(ApiException):
        retry.call(fn, policy=retry.RetryPolicy(max_retries=5))
    assert fn.call_count == 1


def test_gives_up_after_max_retries(mocker):
    mocker.patch("k8s_step_operator.kube.retry.time.sleep")
    fn = mocker.Mock(side_effect=api_error(500))
    with pytest.raises(ApiException):
        retry.call(fn, policy=retry.RetryPolicy(max_retries=2))
    assert fn.call_count == 3


def test_retry_after_is_honoured(mocker):
    sleep = mocker.patch("k8s_step_operator.kube.retry.time.sleep")
    fn = mocker.Mock(side_effect=[api_error(429, {"Retry-After": "4"}), "ok"])
    retry.call(fn, policy=retry.RetryPolicy(base_delay=0.01))
    assert sleep.call_args.args[0] >= 4


def test_backoff_grows_and_is_capped():
    policy = retry.RetryPolicy(base_delay=1, max_delay=5)
    assert policy.delay(1) < policy.delay(3) <= 5 * 1.25

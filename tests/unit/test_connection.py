"""A token set the way ZenML's service connectors set it is sent as a bearer token."""

from kubernetes import client

from k8s_step_operator.kube.connection import keep_bearer_prefix


def _header(cfg: client.Configuration) -> str:
    return cfg.auth_settings()["BearerToken"]["value"]


def test_a_connectors_token_keeps_its_bearer_prefix() -> None:
    cfg = client.Configuration()
    cfg.api_key["authorization"] = "tok"  # kubernetes_service_connector.py, ZenML 0.98
    cfg.api_key_prefix["authorization"] = "Bearer"
    assert _header(cfg) == "tok"  # what the client (v36) would send: anonymous for the API server
    keep_bearer_prefix(cfg)
    assert _header(cfg) == "Bearer tok"


def test_a_token_set_the_current_way_is_left_alone() -> None:
    cfg = client.Configuration()
    cfg.api_key["BearerToken"] = "bearer tok"  # as load_incluster_config and kubeconfigs set it
    keep_bearer_prefix(cfg)
    assert _header(cfg) == "bearer tok" and cfg.api_key_prefix == {}

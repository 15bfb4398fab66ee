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


def test_share_tls_gives_the_pools_one_context_and_more_idle_connections() -> None:
    import ssl

    from k8s_step_operator.kube.connection import POOL_MAXSIZE, share_tls

    cfg = client.Configuration(host="https://fake")
    cfg.verify_ssl = False
    api = share_tls(client.ApiClient(cfg))
    kw = api.rest_client.pool_manager.connection_pool_kw
    assert kw["ssl_context"].verify_mode == ssl.CERT_NONE and kw["ca_certs"] is None and kw["cert_file"] is None
    pool = api.rest_client.pool_manager.connection_from_url("https://fake")
    assert pool.conn_kw["ssl_context"] is kw["ssl_context"] and pool.pool.maxsize == POOL_MAXSIZE
    assert share_tls(api).rest_client.pool_manager.connection_pool_kw["ssl_context"] is kw["ssl_context"]  # once


def test_share_tls_keeps_a_larger_configured_pool_and_leaves_plain_http_alone() -> None:
    from k8s_step_operator.kube.connection import share_tls

    sized = client.Configuration(host="https://fake")
    sized.verify_ssl = False
    sized.connection_pool_maxsize = 100
    assert share_tls(client.ApiClient(sized)).rest_client.pool_manager.connection_pool_kw["maxsize"] == 100
    plain = share_tls(client.ApiClient(client.Configuration(host="http://fake")))
    assert "ssl_context" not in plain.rest_client.pool_manager.connection_pool_kw

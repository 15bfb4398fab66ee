"""The client's connections share one TLS context (loaded once) and still verify and authenticate."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from kubernetes import client, config

from k8s_step_operator.kube import rest
from k8s_step_operator.kube.connection import load_api_client, share_tls
from k8s_step_operator.kube.errors import ApiError


def _held_streams(api: client.ApiClient, namespace: str, count: int) -> list[Any]:
    """``count`` watch streams open at once: each holds a connection of its own."""
    return [
        rest.request(api, "GET", f"/api/v1/namespaces/{namespace}/pods", {"watch": True, "timeoutSeconds": 5}, stream=True)
        for _ in range(count)
    ]


def test_connections_share_one_context_and_authenticate_with_the_client_certificate(
    local_cluster: Any, namespace: str
) -> None:
    api = load_api_client(kubeconfig=str(local_cluster.kubeconfig))
    assert api.configuration.cert_file, "the local cluster's kubeconfig authenticates with a client certificate"
    streams = _held_streams(api, namespace, 3)
    try:
        contexts = {id(s.connection.sock.context) for s in streams}
        assert len(contexts) == 1
        shared = api.rest_client.pool_manager.connection_pool_kw["ssl_context"]
        assert id(shared) in contexts and shared.verify_mode == ssl.CERT_REQUIRED
        # a request on yet another connection is the kubeconfig's user, not anonymous
        review = rest.request(api, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                              body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        assert review["status"]["userInfo"]["username"] not in ("", "system:anonymous")
    finally:
        for s in streams:
            s.release_conn()
        api.close()


def test_a_server_certificate_from_another_authority_is_refused(local_cluster: Any, tmp_path: Any) -> None:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(local_cluster.kubeconfig), client_configuration=cfg)
    stranger = tmp_path / "ca.pem"  # a CA of this machine's trust store, not the cluster's
    stranger.write_text(_any_system_ca())
    cfg.ssl_ca_cert = str(stranger)
    cfg.retries = False
    api = share_tls(client.ApiClient(cfg))
    with pytest.raises(ApiError, match="CERTIFICATE_VERIFY_FAILED"):
        rest.request(api, "GET", "/version")
    api.close()


def _any_system_ca() -> str:
    """One PEM certificate from the system's CA bundle."""
    bundle = open(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt").read()
    end = "-----END CERTIFICATE-----"
    return bundle[bundle.index("-----BEGIN CERTIFICATE-----"): bundle.index(end) + len(end)] + "\n"

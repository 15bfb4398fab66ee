"""Build an ApiClient from a kubeconfig context, in-cluster config or a ZenML service connector."""

from __future__ import annotations

import inspect
import ssl
from typing import Any, List, Optional

from kubernetes import client, config
from urllib3.util.ssl_ import create_urllib3_context

POOL_MAXSIZE = 32  # idle connections kept per API server, at least (the client's default: 5 per core)


def load_api_client(
    context: str | None = None,
    incluster: bool = False,
    kubeconfig: str | None = None,
    connector: Any | None = None,
) -> client.ApiClient:
    """Return a fresh ApiClient (its connections sharing one TLS context, :func:`share_tls`); a
    connector (ZenML ``ServiceConnector``) wins over the others."""
    if connector is not None:
        api = connector.connect()
        if not isinstance(api, client.ApiClient):
            raise RuntimeError(
                f"the service connector returned {type(api).__name__}, expected kubernetes.client.ApiClient; "
                "link a connector of resource type 'kubernetes-cluster'"
            )
        keep_bearer_prefix(api.configuration)
    elif incluster:
        cfg = client.Configuration()
        config.load_incluster_config(client_configuration=cfg)
        api = client.ApiClient(cfg)
    else:
        api = config.new_client_from_config(config_file=kubeconfig, context=context)
    return share_tls(api)


def share_tls(api: client.ApiClient, maxsize: int = POOL_MAXSIZE) -> client.ApiClient:
    """Give every connection of ``api`` one TLS context, loaded once, and keep up to ``maxsize`` idle ones.

    The client hands urllib3 file names (CA, client certificate and key), and urllib3 then builds a
    context for each new connection: OpenSSL's context set-up, the CA file and the key parsed again,
    about 1 ms of CPU and 35 KiB each (measured here) — and the operator opens one connection per
    followed log. The pool keeps at least ``maxsize`` idle connections (the client's default is 5 per
    core): concurrent submits, senders and log followers need more, or a request beyond them opens a
    connection that is dropped afterwards.
    Call before the first request (the pools are made on first use).
    """
    cfg = api.configuration
    manager = api.rest_client.pool_manager
    keywords = manager.connection_pool_kw
    if not str(cfg.host).startswith("https") or keywords.get("ssl_context") is not None:
        return api
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED if cfg.verify_ssl else ssl.CERT_NONE)
    if cfg.verify_ssl:
        if cfg.ssl_ca_cert:
            context.load_verify_locations(cafile=cfg.ssl_ca_cert)
        else:
            context.load_default_certs()
    if cfg.cert_file:
        context.load_cert_chain(cfg.cert_file, cfg.key_file)
    keywords.update(ssl_context=context, ca_certs=None, cert_file=None, key_file=None)
    keywords["maxsize"] = max(int(keywords.get("maxsize") or 0), maxsize)
    manager.clear()
    return api


def keep_bearer_prefix(cfg: client.Configuration) -> None:
    """Send a token set the way clients before v36 took it (ZenML's connectors do) as a bearer token.

    They put the token in ``api_key["authorization"]`` and ``"Bearer"`` in ``api_key_prefix`` under
    the same name. Since v36 the client reads that key as an alias of ``"BearerToken"`` but looks
    the prefix up under ``"BearerToken"`` only, so it sends the bare token, and the API server
    takes the request for ``system:anonymous``.
    """
    prefix = cfg.api_key_prefix.get("authorization")
    if prefix and "authorization" in cfg.api_key and "BearerToken" not in cfg.api_key:
        cfg.api_key_prefix.setdefault("BearerToken", prefix)


def server_of(api: client.ApiClient) -> str:
    """The API server URL an ApiClient talks to (used to key shared watches)."""
    return str(api.configuration.host)


def fix_zenml_connector_verification() -> None:
    """Make ZenML 0.98's Kubernetes service connector usable with the Kubernetes client we need.

    ZenML verifies every connector that hands out a Kubernetes client (the generic Kubernetes one,
    and the AWS, GCP and Azure ones, whose clients are Kubernetes connectors too) with
    ``ApiClient.call_api(..., response_type=...)``, a keyword the client renamed to
    ``response_types_map`` (ZenML's own integration pins ``kubernetes<26``; we need ``>=33``), so
    fetching the connector fails with a TypeError. Where that keyword is gone, the verification is
    replaced by the same ``GET /version`` spelt the current way, with the token sent as a bearer
    token (:func:`keep_bearer_prefix`); elsewhere nothing changes.
    Call it before ``get_connector()``.
    """
    try:
        from zenml.integrations.kubernetes.service_connectors.kubernetes_service_connector import (
            KubernetesServiceConnector,
        )
    except ImportError:
        return
    if "response_type" in inspect.signature(client.ApiClient.call_api).parameters:
        return
    if getattr(KubernetesServiceConnector._verify, "_k8s_step_operator", False):
        return

    def _verify(self: Any, resource_type: Optional[str] = None, resource_id: Optional[str] = None) -> List[str]:
        from urllib3.exceptions import HTTPError
        from zenml.exceptions import AuthorizationException

        assert resource_id is not None
        api = self._connect_to_resource()
        keep_bearer_prefix(api.configuration)
        try:
            api.call_api("/version", "GET", auth_settings=["BearerToken"], response_types_map={200: "VersionInfo"})
        except (client.ApiException, HTTPError) as err:
            raise AuthorizationException(f"failed to verify Kubernetes cluster access: {err}") from err
        finally:
            api.close()
        return [resource_id]

    _verify._k8s_step_operator = True  # type: ignore[attr-defined]
    KubernetesServiceConnector._verify = _verify  # type: ignore[method-assign]

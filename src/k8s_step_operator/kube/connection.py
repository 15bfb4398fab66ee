"""Build an ApiClient from a kubeconfig context, in-cluster config or a ZenML service connector."""

from __future__ import annotations

from typing import Any

from kubernetes import client, config


def load_api_client(
    context: str | None = None,
    incluster: bool = False,
    kubeconfig: str | None = None,
    connector: Any | None = None,
) -> client.ApiClient:
    """Return a fresh ApiClient; a connector (ZenML ``ServiceConnector``) wins over the others."""
    if connector is not None:
        api = connector.connect()
        if not isinstance(api, client.ApiClient):
            raise RuntimeError(
                f"the service connector returned {type(api).__name__}, expected kubernetes.client.ApiClient; "
                "link a connector of resource type 'kubernetes-cluster'"
            )
        return api
    if incluster:
        cfg = client.Configuration()
        config.load_incluster_config(client_configuration=cfg)
        return client.ApiClient(cfg)
    return config.new_client_from_config(config_file=kubeconfig, context=context)


def server_of(api: client.ApiClient) -> str:
    """The API server URL an ApiClient talks to (used to key shared watches)."""
    return str(api.configuration.host)

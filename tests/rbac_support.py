"""What tests that run the operator under a ServiceAccount share: the RBAC exactly as
``k8s-step-operator rbac`` prints it, applied with kubectl, and the account's bound tokens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Optional

from kubernetes import client

CLI = str(Path(sys.executable).with_name("k8s-step-operator"))
KUBECTL = "kubectl"


def printed_rbac(namespace: str, service_account: str, *extra: str) -> str:
    """What ``k8s-step-operator rbac`` prints (the installed console script, as users run it)."""
    proc = subprocess.run([CLI, "rbac", "-n", namespace, "--service-account", service_account, *extra],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def kubectl_apply(kubeconfig: Path, text: str) -> None:
    proc = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "apply", "-f", "-"], input=text, text=True,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def service_account_token(
    api: client.ApiClient, namespace: str, service_account: str, bound_secret: Optional[str] = None
) -> str:
    """A token of the ServiceAccount from the TokenRequest API, valid for an hour; bound to the
    Secret ``bound_secret`` if given (deleting that Secret revokes the token)."""
    bound = client.V1BoundObjectReference(api_version="v1", kind="Secret", name=bound_secret) if bound_secret else None
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600, bound_object_ref=bound)
    )
    return client.CoreV1Api(api).create_namespaced_service_account_token(service_account, namespace, request).status.token

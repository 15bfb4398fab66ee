"""What a local cluster installs once its API server is up: CoreDNS's access, and the image rule.

- CoreDNS runs as a host process (on the slot's DNS address, port 53) under the user
  ``system:coredns``, bound to the same read-only ClusterRole a CoreDNS Deployment gets.
- A ValidatingAdmissionPolicy admits only images from the local registry
  (``registry.k8sso.local``): a pod can never make a node pull from outside this machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .images import REGISTRY_HOST

COREDNS_USER = "system:coredns"
IMAGE_POLICY = "k8sso-local-images"


def corefile(dns_ip: str, kubeconfig: Path, health_port: int) -> str:
    """Cluster DNS for cluster.local and reverse lookups; nothing is forwarded off the machine."""
    return f""".:53 {{
    bind {dns_ip}
    errors
    health {dns_ip}:{health_port}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        ttl 5
    }}
    cache 5
    loadbalance
}}
"""


def objects() -> list[dict]:
    rules = [
        {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
    ]
    images = (
        f"object.spec.{field}.all(c, c.image.startsWith('{REGISTRY_HOST}/'))"
        for field in ("containers", "initContainers", "ephemeralContainers")
    )
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "system:coredns"}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": COREDNS_USER}]},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
         "metadata": {"name": IMAGE_POLICY},
         "spec": {
             "failurePolicy": "Fail",
             "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                     "operations": ["CREATE", "UPDATE"], "resources": ["pods"]}]},
             "validations": [{
                 "expression": " && ".join(f"(!has(object.spec.{f}) || {e})" for f, e in
                                           zip(("containers", "initContainers", "ephemeralContainers"), images, strict=True)),
                 "message": f"the local cluster pulls images only from its own registry: use {REGISTRY_HOST}/... "
                            "(this machine has no route to other registries)",
                 "reason": "Invalid",
             }],
         }},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": {"name": IMAGE_POLICY},
         "spec": {"policyName": IMAGE_POLICY, "validationActions": ["Deny"]}},
    ]


_PLURALS = {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings",
            "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
            "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings"}


KINDS = frozenset(_PLURALS)


def resource_path(obj: dict) -> str:
    """The URL path of a cluster-scoped object of a kind listed above."""
    return f"/apis/{obj['apiVersion']}/{_PLURALS[obj['kind']]}/{obj['metadata']['name']}"


def install(apply: Callable[[dict], dict]) -> None:
    for obj in objects():
        apply(obj)

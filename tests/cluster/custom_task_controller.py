"""Test support: CRDs, and a small custom-task controller that completes Tekton ``CustomRun``s.

The controller is a thread using the Kubernetes client, as a real custom task's
controller would be a Deployment: it watches ``CustomRun`` objects in one
namespace whose ``customRef``/``customSpec`` is its ``Sum`` kind, reports
``Succeeded=Unknown`` (Running) first, then computes the task — ``a + b`` or
``a * b`` — and reports ``Succeeded=True`` with the result in
``status.results``, or ``Succeeded=False`` with a reason and a message when
the params are not numbers.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Iterator

from kubernetes import client

from k8s_step_operator.kube import rest
from k8s_step_operator.steps.conditions import parse_condition
from k8s_step_operator.steps.object_watch import WaitTarget, stream, wait_for_conditions, wait_until_deleted

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
TEKTON = "tekton.dev/v1beta1"
TASK_GROUP = "math.k8sso.example.com"
TASK_API_VERSION = f"{TASK_GROUP}/v1alpha1"
TASK_KIND = "Sum"
_MERGE = "application/merge-patch+json"


def install_crd(api: client.ApiClient, group: str, kind: str, plural: str, scope: str, version: str = "v1") -> None:
    """Create a schemaless CRD with a status subresource and wait until it is Established."""
    name = f"{plural}.{group}"
    body = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    obj = rest.request(api, "POST", CRDS, body=body, timeout=30)
    wait_for_conditions(
        api,
        WaitTarget(CRDS, name, "crd"),
        obj,
        parse_condition("object.status.conditions.exists(c, c.type == 'Established' && c.status == 'True')"),
        None,
        30,
    )


def delete_crd(api: client.ApiClient, name: str) -> None:
    """Delete a CRD (its objects go with it) and wait until it is gone, so that the next test can create it."""
    rest.request(api, "DELETE", f"{CRDS}/{name}", timeout=30)
    wait_until_deleted(api, WaitTarget(CRDS, name, f"CRD {name}"), 60)


def _number(text: Any) -> float:
    return float(str(text))


def _shown(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


class SumController(threading.Thread):
    """Completes ``CustomRun``s of the ``Sum`` custom task in ``namespace``."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(name="sum-controller", daemon=True)
        self.api = api
        self.namespace = namespace
        self.events: "queue.Queue[tuple[str, str, Any]]" = queue.Queue()
        self.stream = stream(api, "runs", f"/apis/{TEKTON}/namespaces/{namespace}/customruns", "", self.events)
        self._stop = threading.Event()
        self.seen_unknown: set[str] = set()

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()
        self.stream.close()

    def run(self) -> None:
        self.stream.start()
        while not self._stop.is_set():
            try:
                _tag, kind, payload = self.events.get(timeout=0.5)
            except queue.Empty:
                continue
            for obj in payload if kind == "LIST" else [payload] if kind in ("ADDED", "MODIFIED") else []:
                try:
                    self.reconcile(obj)
                except Exception as exc:  # noqa: BLE001 - a test controller keeps going
                    print(f"sum-controller: {exc}")

    def _task(self, run: dict[str, Any]) -> dict[str, Any] | None:
        spec = run.get("spec") or {}
        ref, embedded = spec.get("customRef"), spec.get("customSpec")
        target = ref or embedded or {}
        if target.get("apiVersion") != TASK_API_VERSION or target.get("kind") != TASK_KIND:
            return None
        if embedded is not None:
            return embedded.get("spec") or {}
        path = f"/apis/{TASK_API_VERSION}/namespaces/{self.namespace}/sums/{ref['name']}"
        return rest.request(self.api, "GET", path, timeout=30).get("spec") or {}

    def _report(self, name: str, status: dict[str, Any]) -> None:
        path = f"/apis/{TEKTON}/namespaces/{self.namespace}/customruns/{name}/status"
        rest.request(self.api, "PATCH", path, body={"status": status}, content_type=_MERGE, timeout=30)

    def reconcile(self, run: dict[str, Any]) -> None:
        """Drive one run to its end: Unknown (Running), then True with the result or False."""
        name = run["metadata"]["name"]
        conditions = (run.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Succeeded" and c.get("status") in ("True", "False") for c in conditions):
            return
        task = self._task(run)
        if task is None:
            return
        if not conditions:
            self.seen_unknown.add(name)
            self._report(name, {"conditions": [
                {"type": "Succeeded", "status": "Unknown", "reason": "Running", "message": "computing"}]})
            return
        time.sleep(0.2)
        params = {p["name"]: p.get("value") for p in (run.get("spec") or {}).get("params") or []}
        operation = task.get("operation", "add")
        try:
            a, b = _number(params.get("a")), _number(params.get("b"))
        except (TypeError, ValueError):
            self._report(name, {"conditions": [{
                "type": "Succeeded", "status": "False", "reason": "InvalidParams",
                "message": f"params a={params.get('a')!r} and b={params.get('b')!r} must be numbers"}]})
            return
        value = a + b if operation == "add" else a * b
        self._report(name, {
            "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded",
                            "message": f"{operation} done"}],
            "results": [{"name": task.get("result", "value"), "value": _shown(value)}],
        })


def custom_task_world(api: client.ApiClient, namespace: str) -> Iterator[SumController]:
    """CustomRun and Sum CRDs, a ``multiply`` Sum task object, and a running controller; removed afterwards."""
    install_crd(api, "tekton.dev", "CustomRun", "customruns", "Namespaced", version="v1beta1")
    install_crd(api, TASK_GROUP, TASK_KIND, "sums", "Namespaced", version="v1alpha1")
    controller = SumController(api, namespace)
    try:
        rest.request(api, "POST", f"/apis/{TASK_API_VERSION}/namespaces/{namespace}/sums", body={
            "apiVersion": TASK_API_VERSION, "kind": TASK_KIND, "metadata": {"name": "multiply"},
            "spec": {"operation": "multiply", "result": "product"}}, timeout=30)
        controller.start()
        yield controller
    finally:
        controller.stop()
        delete_crd(api, f"sums.{TASK_GROUP}")
        delete_crd(api, "customruns.tekton.dev")

"""Measure 5: how fast a resource step notices the status change its success condition waits for.

The object is a ``BenchWidget`` (a tiny CRD with a status subresource, installed here).
Each trial creates one through the step, waits a random 0.5–5.5 s (so the change lands
at a random phase of a poll cycle), then sets ``status.phase=Ready`` through the
``/status`` subresource, noting the wall-clock time just before the request is sent.
Reaction = the moment the step's function returns − that time.

* ``watch`` (ours): ``k8s_step_operator.steps.entrypoints.resource_entrypoint(spec)``,
  the very function ZenML runs for a ``resource_step(..., success_condition=...)``:
  create, then wait on a watch of the object.
* ``poll-5s`` (Argo's way, the baseline): the same create, then GET the object every
  5 s and evaluate the same condition with the same evaluator
  (``k8s_step_operator.steps.conditions.evaluate``) until it succeeds.

ZenML's built-in Kubernetes step operator has no resource steps at all.
Trials alternate between the two variants, with the same delays for both.
"""

from __future__ import annotations

import random
import threading
import time
import urllib.error
from typing import Any, Callable

from .common import Admin, RequestLog, row_name, summary

GROUP = "bench.k8s-step-operator.io"
PLURAL = "benchwidgets"
KIND = "BenchWidget"
CONDITION = "status.phase==Ready"
POLL_INTERVAL = 5.0

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "benchwidget", "kind": KIND, "listKind": f"{KIND}List"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}


def install_crd(admin: Admin, timeout: float = 60.0) -> None:
    try:
        admin.json("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CRD)
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = admin.get(f"/apis/{GROUP}/v1")
            if any(r.get("name") == PLURAL for r in found.get("resources", [])):
                return
        except urllib.error.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"CRD {PLURAL}.{GROUP} never became served")


def manifest(name: str, namespace: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"size": 1},
    }


def _watch_variant(p: dict, name: str) -> Callable[[], Any]:
    from k8s_step_operator.steps.entrypoints import resource_entrypoint
    from k8s_step_operator.steps.resource_spec import StepOptions, build_resource_spec

    spec = build_resource_spec(
        manifest(name, p["namespace"]),
        action="create",
        options=StepOptions(success_condition=CONDITION, timeout=120.0, kubeconfig=p["kubeconfig"]),
    )
    return lambda: resource_entrypoint(spec.to_dict())


def _poll_variant(p: dict, name: str, api: Any) -> Callable[[], Any]:
    from k8s_step_operator.kube import rest
    from k8s_step_operator.steps.conditions import Verdict, evaluate, parse_conditions

    success, failure = parse_conditions(CONDITION, None)
    base = f"/apis/{GROUP}/v1/namespaces/{p['namespace']}/{PLURAL}"

    def run() -> Any:
        obj = rest.request(api, "POST", base, body=manifest(name, p["namespace"]))
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline:
            obj = rest.request(api, "GET", f"{base}/{name}")
            verdict, _ = evaluate(obj, success, failure)
            if verdict is Verdict.SUCCEEDED:
                return obj
            time.sleep(POLL_INTERVAL)
        raise TimeoutError(name)

    return run


def run(p: dict) -> dict:
    from kubernetes import config

    admin = Admin(p["kubeconfig"])
    install_crd(admin)
    requests = RequestLog().install()
    poll_api = config.new_client_from_config(config_file=p["kubeconfig"])
    rng = random.Random(p.get("seed", 5))
    delays = [rng.uniform(0.5, 5.5) for _ in range(p["trials"])]
    base = f"/apis/{GROUP}/v1/namespaces/{p['namespace']}/{PLURAL}"
    results: dict[str, list[dict]] = {"watch": [], "poll-5s": []}
    for i, delay in enumerate(delays):
        for variant in ("watch", "poll-5s") if i % 2 == 0 else ("poll-5s", "watch"):
            name = f"w-{variant.replace('-', '')}-{i}"
            call = _watch_variant(p, name) if variant == "watch" else _poll_variant(p, name, poll_api)
            outcome: dict[str, Any] = {}

            def target(call: Callable[[], Any] = call, outcome: dict = outcome) -> None:
                try:
                    call()
                    outcome["t_return"] = time.time()
                except BaseException as exc:  # noqa: BLE001 - reported
                    outcome["error"] = f"{type(exc).__name__}: {exc}"

            mark = requests.mark()
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            deadline = time.monotonic() + 30
            while not admin.exists(f"{base}/{name}"):
                if time.monotonic() > deadline or "error" in outcome:
                    raise RuntimeError(f"{variant}: {name} was never created: {outcome.get('error')}")
                time.sleep(0.01)
            time.sleep(delay)
            t_change = time.time()
            admin.json(
                "PATCH",
                f"{base}/{name}/status",
                {"status": {"phase": "Ready"}},
                content_type="application/merge-patch+json",
            )
            t_patched = time.time()
            thread.join(30)
            record = {
                "delay_s": delay,
                "patch_round_trip_s": t_patched - t_change,
                "reaction_s": outcome["t_return"] - t_change if "t_return" in outcome else None,
                "after_patch_response_s": outcome["t_return"] - t_patched if "t_return" in outcome else None,
                "error": outcome.get("error"),
                "requests": {row_name(r): n for r, n in sorted(requests.rows(mark).items())},
            }
            results[variant].append(record)
            print(f"[resource {variant}] trial {i}: {record}", flush=True)
            admin.delete(f"{base}/{name}")
    return {
        "condition": CONDITION,
        "poll_interval_s": POLL_INTERVAL,
        "trials": results,
        "reaction": {v: summary([r["reaction_s"] for r in rs if r["reaction_s"] is not None]) for v, rs in results.items()},
        "errors": {v: [r["error"] for r in rs if r["error"]] for v, rs in results.items()},
    }

"""Quickstart: the training step runs in its own Pod on the GPU node; the other steps run locally.

Run it from a ZenML repository whose active stack has a `k8s` step operator
(`scripts/demo.sh` sets all of that up against the bundled local cluster):

    K8SSO_STEP_OPERATOR=k8s-local python run.py
"""

from __future__ import annotations

import os
import platform
import random
import socket
import sys
from typing import Annotated

from zenml import pipeline, step
from zenml.config import DockerSettings

from k8s_step_operator.settings import K8sStepOperatorSettings

STEP_OPERATOR = os.environ.get("K8SSO_STEP_OPERATOR", "k8s-local")
IMAGE = os.environ.get("K8SSO_IMAGE", "registry.k8sso.local/k8sso/step:latest")

# Settings in the shape of ZenML's Kubernetes example: pick the GPU pool, tolerate its taint,
# ask for a GPU. On a real cluster, replace the image with one built by your stack.
gpu_settings = K8sStepOperatorSettings(
    pod_settings={
        "node_selectors": {"cloud.google.com/gke-nodepool": "ml-pool"},
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "gpu-type", "operator": "In", "values": ["nvidia-tesla-v100"]}]}
                    ]
                }
            }
        },
        "tolerations": [{"key": "gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}],
        "resources": {
            "requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"},
            "limits": {"memory": "2Gi", "nvidia.com/gpu": "1"},
        },
        "labels": {"team": "data-science"},
        "env": [{"name": "K8SSO_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
    },
    startup_timeout=120,
)
docker = DockerSettings(skip_build=True, parent_image=IMAGE)


@step
def load_data(n: int = 200, seed: int = 7) -> Annotated[list, "points"]:
    """Noisy points on y = 3x + 2."""
    rng = random.Random(seed)
    return [(x, 3 * x + 2 + rng.gauss(0, 0.1)) for x in (rng.random() for _ in range(n))]


@step(step_operator=STEP_OPERATOR, settings={"step_operator": gpu_settings, "docker": docker})
def train(points: list, epochs: int = 300, lr: float = 0.5) -> Annotated[dict, "model"]:
    """Gradient descent on a line; prints its progress, which streams to your console."""
    w, b = 0.0, 0.0
    print(f"running in container {socket.gethostname()} on node {os.environ.get('K8SSO_NODE_NAME', '?')}, "
          f"Python {platform.python_version()} at {sys.executable}")
    print(f"training on {len(points)} points, GPUs visible: {os.environ.get('NVIDIA_VISIBLE_DEVICES', 'n/a')}")
    for epoch in range(epochs):
        gw = sum(2 * (w * x + b - y) * x for x, y in points) / len(points)
        gb = sum(2 * (w * x + b - y) for x, y in points) / len(points)
        w, b = w - lr * gw, b - lr * gb
        if epoch % 50 == 0 or epoch == epochs - 1:
            loss = sum((w * x + b - y) ** 2 for x, y in points) / len(points)
            print(f"epoch {epoch:3d}  loss {loss:.4f}  w={w:.3f} b={b:.3f}", flush=True)
    return {"w": w, "b": b}


@step
def evaluate(model: dict, points: list) -> Annotated[float, "mse"]:
    mse = sum((model["w"] * x + model["b"] - y) ** 2 for x, y in points) / len(points)
    print(f"model: y = {model['w']:.3f} x + {model['b']:.3f}   (mse {mse:.4f})")
    return mse


@pipeline(enable_cache=False)
def quickstart() -> None:
    points = load_data()
    evaluate(train(points), points)


def main() -> None:
    run = quickstart()
    mse = run.steps["evaluate"].outputs["mse"][0].load()
    model = run.steps["train"].outputs["model"][0].load()
    print(f"\nrun {run.name}: {run.status.value}; learned y = {model['w']:.2f} x + {model['b']:.2f}, mse {mse:.4f}")


if __name__ == "__main__":
    main()

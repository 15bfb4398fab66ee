"""What the ZenML-driven tests share: an isolated ZenML environment and a stack on the local cluster."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

BIN = Path(sys.executable).parent


def zenml_env(root: Path, operator: str, **extra: str) -> dict[str, str]:
    """Environment for ZenML subprocesses with their own config dir under ``root`` (no shared state)."""
    env = {
        **os.environ,
        "ZENML_CONFIG_PATH": str(root / ".zenconfig"),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "ZENML_LOGGING_COLORS_DISABLED": "true",
        "ZENML_ENABLE_RICH_TRACEBACK": "false",
        "K8SSO_OPERATOR": operator,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "200",
        **extra,
    }
    env.pop("KUBECONFIG", None)
    return env


def register_k8s_stack(
    zenml: Callable[..., object], operator: str, namespace: str, kubeconfig: Path, stack: str, startup_timeout: int
) -> None:
    """`zenml init`, the `k8s` flavor, a step operator on the local cluster, and an active stack with it."""
    zenml("init")
    zenml("step-operator", "flavor", "register", "k8s_step_operator.flavor.K8sStepOperatorFlavor")
    zenml(
        "step-operator", "register", operator, "--flavor=k8s", f"--kubernetes_namespace={namespace}",
        f"--kubeconfig={kubeconfig}", "--local=True", f"--startup_timeout={startup_timeout}",
    )
    zenml("stack", "register", stack, "-o", "default", "-a", "default", "-s", operator, "--set")

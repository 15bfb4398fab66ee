"""What the ZenML-driven tests share: an isolated ZenML environment and a stack on the local cluster."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Optional

BIN = Path(sys.executable).parent
SRC = Path(__file__).resolve().parents[1] / "src"


def zenml_env(root: Path, operator: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for ZenML subprocesses with their own config dir under ``root`` (no shared state).

    The caller's ``KUBECONFIG`` is dropped (the stack names its own); ``extra`` may set one.
    """
    env = {
        **{k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
        "ZENML_CONFIG_PATH": str(root / ".zenconfig"),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "ZENML_LOGGING_COLORS_DISABLED": "true",
        "ZENML_ENABLE_RICH_TRACEBACK": "false",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "200",
        **({"K8SSO_OPERATOR": operator} if operator else {}),
        **extra,
    }
    return env


def src_on_pythonpath() -> str:
    """``PYTHONPATH`` with this checkout's ``src`` first, for scripts run from outside the repo."""
    return os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)


def register_k8s_stack(
    zenml: Callable[..., object], operator: str, namespace: str, kubeconfig: Optional[Path], stack: str,
    startup_timeout: int, *options: str,
) -> None:
    """`zenml init`, the `k8s` flavor, a step operator on the local cluster, and an active stack with it.

    The operator reaches the cluster through ``kubeconfig``, or, with ``kubeconfig=None``, through
    what ``options`` say (``--incluster=True``, ``--connector=NAME``).
    """
    zenml("init")
    zenml("step-operator", "flavor", "register", "k8s_step_operator.flavor.K8sStepOperatorFlavor")
    zenml(
        "step-operator", "register", operator, "--flavor=k8s", f"--kubernetes_namespace={namespace}",
        *([f"--kubeconfig={kubeconfig}"] if kubeconfig else []), "--local=True", f"--startup_timeout={startup_timeout}",
        *options,
    )
    zenml("stack", "register", stack, "-o", "default", "-a", "default", "-s", operator, "--set")

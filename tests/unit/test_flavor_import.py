"""ZenML builds the stack's components inside every step's pod too; loading our operator there
must not import the Kubernetes client (~900 modules, about half a second per step)."""

import ast
import subprocess
import sys


def kubernetes_modules_loaded_by(code: str) -> list[str]:
    """The ``kubernetes`` client modules a fresh interpreter has loaded after running ``code``."""
    probe = code + "\nimport sys\nprint(sorted(m for m in sys.modules if m == 'kubernetes' or m.startswith('kubernetes.')))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return ast.literal_eval(out.strip().splitlines()[-1])


def test_loading_the_operator_class_does_not_import_the_kubernetes_client() -> None:
    code = (
        "from k8s_step_operator.flavor import K8sStepOperatorFlavor\n"
        "cls = K8sStepOperatorFlavor().implementation_class\n"
        "assert cls.__name__ == 'K8sStepOperator', cls\n"
    )
    assert kubernetes_modules_loaded_by(code) == []

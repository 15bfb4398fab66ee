"""KFP-Tekton's custom tasks in ZenML: steps that run a Tekton ``CustomRun`` and output its results.

In KFP-Tekton a custom task is a ContainerOp whose arguments name the task::

    dsl.ContainerOp(name="add", image=MY_CUSTOM_TASK_IMAGE_NAME,
                    arguments=["--apiVersion", "math.k8sso.example.com/v1alpha1", "--kind", "Sum",
                               "--name", "add-numbers", "--taskSpec", {"operation": "add", "result": "sum"}],
                    command=["--a", a, "--b", b],
                    file_outputs={"sum": "/anypath"})

Here :func:`custom_task_step` takes the same fields; the step creates a
``tekton.dev/v1beta1`` ``CustomRun``, waits on a watch for its ``Succeeded``
condition and outputs the run's ``status.results``. The first task embeds its
spec (``taskSpec``), the second references a task object by name
(``taskRef``), and its ``a`` param is bound to the first one's result.

Needs a controller for the ``Sum`` kind in the cluster (the test suite runs a
small one: ``tests/cluster/custom_task_controller.py``). Run it from a ZenML
repository whose active stack has a ``k8s`` step operator::

    python tekton_custom_task.py [--a A] [--b B] [--factor F]

It prints ``RESULT {...}``.
"""

from __future__ import annotations

import argparse
import json
import sys

from zenml import pipeline, step

from k8s_step_operator.steps import REQUIRED, cleanup_run_resources, custom_task_step

API_VERSION = "math.k8sso.example.com/v1alpha1"


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=int, default=2)
    parser.add_argument("--b", type=int, default=3)
    parser.add_argument("--factor", type=int, default=4)
    return parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])


OPTIONS = _options()

add = custom_task_step(
    API_VERSION, "Sum", "add-numbers",
    task_spec={"operation": "add", "result": "sum"},
    params={"a": REQUIRED, "b": REQUIRED},
    results=["sum"],
    step_name="add",
    timeout=120,
)
multiply = custom_task_step(
    API_VERSION, "Sum", "multiply-numbers",
    task_ref="multiply",                      # a Sum object holding {operation: multiply, result: product}
    params={"a": REQUIRED, "b": 1},
    results=["product"],
    step_name="multiply",
    timeout=120,
)


@step
def report(total: str, product: str) -> str:
    """What the runs computed."""
    text = f"sum {total}, product {product}"
    print(text)
    return text


@pipeline(enable_cache=False, on_success=cleanup_run_resources, on_failure=cleanup_run_resources)
def custom_tasks(a: int = 2, b: int = 3, factor: int = 4) -> None:
    """Two custom tasks; the second's ``a`` is the first one's result."""
    _run, _manifest, total = add(a=a, b=b)
    _run2, _manifest2, product = multiply(a=total, b=factor)
    report(total, product)


if __name__ == "__main__":
    from zenml.client import Client

    run = Client().get_pipeline_run(custom_tasks(a=OPTIONS.a, b=OPTIONS.b, factor=OPTIONS.factor).id)
    outputs = {name: {k: v[0].load() for k, v in s.outputs.items()} for name, s in run.steps.items()}
    print("RESULT " + json.dumps({
        "status": str(run.status.value),
        "sum": outputs["add"]["sum"],
        "product": outputs["multiply"]["product"],
        "runs": [outputs["add"]["name"], outputs["multiply"]["name"]],
        "report": outputs["report"]["output"],
        "namespace": outputs["add"]["manifest"]["metadata"]["namespace"],
    }))

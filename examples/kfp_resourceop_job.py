"""KFP's ResourceOp sample in ZenML: a step that creates a Job and waits for it.

The KFP v1 original (``samples/core/resource_ops/resource_ops.py``)::

    op = kfp.dsl.ResourceOp(
        name="test-step",
        k8s_resource=json.loads(_job_manifest),   # a Job with generateName
        action="create",
        success_condition="status.succeeded > 0",
        failure_condition="status.failed > 0",
    )

Here the same Job is created by :func:`resource_step`; the conditions are
evaluated on watch events of the Job, and the step's outputs (``name``,
``manifest`` and the attribute output ``succeeded``) feed a normal ZenML step.

Run it from a ZenML repository whose active stack has a ``k8s`` step operator
(the Job goes to that operator's cluster and namespace), or point it at a
cluster yourself::

    python kfp_resourceop_job.py [--kubeconfig PATH] [--namespace NS]

(also ``K8SSO_KUBECONFIG`` / ``K8SSO_NAMESPACE``; ``K8SSO_JOB_IMAGE`` replaces the local cluster's busybox,
where KFP's sample says ``busybox``). It prints ``RESULT {...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict

from zenml import pipeline, step

from k8s_step_operator.steps import resource_step

JOB_MANIFEST = """
{
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"generateName": "resourceop-basic-job-"},
    "spec": {
        "template": {
            "metadata": {"name": "resource-basic"},
            "spec": {
                "containers": [{
                    "name": "sample-container",
                    "image": "%(image)s",
                    "command": ["env"]
                }],
                "restartPolicy": "Never"
            }
        },
        "backoffLimit": 4
    }
}
""" % {"image": os.environ.get("K8SSO_JOB_IMAGE", "registry.k8sso.local/k8sso/busybox:latest")}


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", default=os.environ.get("K8SSO_KUBECONFIG"))
    parser.add_argument("--namespace", default=os.environ.get("K8SSO_NAMESPACE"))
    # Only the script's own command line; ZenML importing this module sees the defaults.
    return parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])


OPTIONS = _options()

create_job = resource_step(
    JOB_MANIFEST,
    name="test_step",
    action="create",
    success_condition="status.succeeded > 0",
    failure_condition="status.failed > 0",
    attribute_outputs={"succeeded": "{.status.succeeded}"},
    timeout=300,
    namespace=OPTIONS.namespace,
    kubeconfig=OPTIONS.kubeconfig,
)


@step
def report(job_name: str, manifest: Dict[str, Any], succeeded: Any) -> str:
    """What the KFP UI would show for the op: the Job's name and completion."""
    completion = manifest.get("status", {}).get("completionTime")
    print(f"Job {job_name} succeeded={succeeded} completed at {completion}")
    return job_name


@pipeline(enable_cache=False)
def resourceop_basic() -> None:
    """Start a container that prints its environment, as a Job created by a resource step."""
    job_name, manifest, succeeded = create_job()
    report(job_name, manifest, succeeded)


if __name__ == "__main__":
    from zenml.client import Client

    run = Client().get_pipeline_run(resourceop_basic().id)
    step_run = run.steps["test_step"]
    outputs = {key: artifacts[0].load() for key, artifacts in step_run.outputs.items()}
    print("RESULT " + json.dumps(
        {
            "status": str(run.status.value),
            "job": outputs["name"],
            "succeeded": outputs["succeeded"],
            "namespace": outputs["manifest"]["metadata"]["namespace"],
        }
    ))

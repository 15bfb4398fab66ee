"""KFP's sequential VolumeOp sample in ZenML: one volume, three steps in pods using it in turn.

The KFP v1 original (``samples/contrib/volume_ops/volumeop_sequential.py``)::

    vop = dsl.VolumeOp(name="mypvc", resource_name="newpvc", size="10Gi", modes=dsl.VOLUME_MODE_RWM)
    step1 = dsl.ContainerOp(name="step1", image="library/bash:4.4.23", command=["sh", "-c"],
                            arguments=["echo 1|tee /data/file1"], pvolumes={"/data": vop.volume})
    step2 = dsl.ContainerOp(name="step2", image="library/bash:4.4.23", command=["sh", "-c"],
                            arguments=["cp /data/file1 /data/file2"], pvolumes={"/data": step1.pvolume})
    step3 = dsl.ContainerOp(name="step3", image="library/bash:4.4.23",
                            command=["cat", "/mnt/file1", "/mnt/file2"], pvolumes={"/mnt": step2.pvolume})

In ZenML the volume step's ``name`` output (the PVC name) is passed from step
to step; each step runs in its own pod on the ``k8s`` step operator, which
mounts the claim named by its ``pvc`` input (the ``pvolumes`` setting), and
the hand-over orders the steps like KFP's ``step1.pvolume``. The pipeline's
hook deletes the volume when the run ends.

Run it from a ZenML repository whose active stack has a ``k8s`` step operator::

    python kfp_volumeop_sequential.py [--step-operator NAME] [--image IMAGE]
        [--storage-class CLASS] [--kubeconfig PATH] [--namespace NS]

(also ``K8SSO_STEP_OPERATOR``, ``K8SSO_IMAGE``, ``K8SSO_STORAGE_CLASS``,
``K8SSO_KUBECONFIG``, ``K8SSO_NAMESPACE``). It prints ``RESULT {...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from zenml import pipeline, step
from zenml.config import DockerSettings

from k8s_step_operator.steps import VOLUME_MODE_RWM, cleanup_run_resources, volume_step


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step-operator", default=os.environ.get("K8SSO_STEP_OPERATOR", "k8s-local"))
    parser.add_argument("--image", default=os.environ.get("K8SSO_IMAGE", "registry.k8sso.local/k8sso/step:latest"))
    parser.add_argument("--storage-class", default=os.environ.get("K8SSO_STORAGE_CLASS"))
    parser.add_argument("--kubeconfig", default=os.environ.get("K8SSO_KUBECONFIG"))
    parser.add_argument("--namespace", default=os.environ.get("K8SSO_NAMESPACE"))
    return parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])


OPTIONS = _options()
POD = {"docker": DockerSettings(skip_build=True, parent_image=OPTIONS.image)}


def mounted(path: str) -> dict:
    """Step settings: run in a pod with the PVC named by the ``pvc`` input mounted at ``path``."""
    return {**POD, "step_operator": {"pvolumes": {path: "pvc"}}}


create_volume = volume_step(
    "newpvc",
    size="10Gi",
    modes=VOLUME_MODE_RWM,
    storage_class=OPTIONS.storage_class,
    name="mypvc",
    namespace=OPTIONS.namespace,
    kubeconfig=OPTIONS.kubeconfig,
)


@step(step_operator=OPTIONS.step_operator, settings=mounted("/data"))
def step1(pvc: str) -> str:
    """echo 1 | tee /data/file1"""
    Path("/data/file1").write_text("1\n")
    print(Path("/data/file1").read_text(), end="")
    return pvc


@step(step_operator=OPTIONS.step_operator, settings=mounted("/data"))
def step2(pvc: str) -> str:
    """cp /data/file1 /data/file2"""
    shutil.copyfile("/data/file1", "/data/file2")
    return pvc


@step(step_operator=OPTIONS.step_operator, settings=mounted("/mnt"))
def step3(pvc: str) -> str:
    """cat /mnt/file1 /mnt/file2"""
    text = Path("/mnt/file1").read_text() + Path("/mnt/file2").read_text()
    print(text, end="")
    return text


@pipeline(enable_cache=False, on_success=cleanup_run_resources, on_failure=cleanup_run_resources)
def volumeop_sequential() -> None:
    """A volume created by one step and used by three sequential pod steps."""
    pvc, _manifest, _size = create_volume()
    step3(step2(step1(pvc)))


if __name__ == "__main__":
    from zenml.client import Client

    run = Client().get_pipeline_run(volumeop_sequential().id)
    outputs = {name: {k: a[0].load() for k, a in s.outputs.items()} for name, s in run.steps.items()}
    print("RESULT " + json.dumps(
        {
            "status": str(run.status.value),
            "pvc": outputs["mypvc"]["name"],
            "size": outputs["mypvc"]["size"],
            "cat": outputs["step3"]["output"],
        }
    ))

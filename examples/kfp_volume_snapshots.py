"""KFP's VolumeSnapshotOp sample in ZenML: write, snapshot, read-and-write in another pod, snapshot, ...

The KFP v1 original (``samples/core/volume_snapshot_ops/volume_snapshot_ops.py``)::

    vop = dsl.VolumeOp(name="create_volume", resource_name="vol1", size="1Gi", modes=dsl.VOLUME_MODE_RWO)
    step1 = dsl.ContainerOp(name="step1_ingest", ...,
        arguments=["mkdir /data/step1 && gsutil cat %s | gzip -c >/data/step1/file1.gz" % url],
        pvolumes={"/data": vop.volume})
    step1_snap = dsl.VolumeSnapshotOp(name="step1_snap", resource_name="step1_snap", volume=step1.pvolume)
    step2 = dsl.ContainerOp(name="step2_gunzip", ...,
        arguments=["mkdir /data/step2 && gunzip /data/step1/file1.gz -c >/data/step2/file1"],
        pvolumes={"/data": step1.pvolume})
    step2_snap = dsl.VolumeSnapshotOp(name="step2_snap", resource_name="step2_snap", volume=step2.pvolume)
    step3 = dsl.ContainerOp(name="step3_copy", ...,
        arguments=["mkdir /data/step3 && cp -av /data/step2/file1 /data/step3/file3"],
        pvolumes={"/data": step2.pvolume})
    step3_snap = dsl.VolumeSnapshotOp(name="step3_snap", resource_name="step3_snap", volume=step3.pvolume)
    step4 = dsl.ContainerOp(name="step4_output", ..., command=["cat", "/data/step2/file1", "/data/step3/file3"],
        pvolumes={"/data": step3.pvolume})

Differences, on purpose: the input text comes from a pipeline parameter
instead of ``gsutil cat``; each snapshot is taken *before* the next step
writes (in KFP the snapshot and the next step may run at the same time), by
passing the snapshot's name to the next step; and a last volume is restored
from ``step3_snap`` through ``volume_step(...)(data_source=...)`` and read in
a pod, to show the snapshot holds the data. Snapshots and volumes are deleted
by the pipeline's hook when the run ends.

Run it from a ZenML repository whose active stack has a ``k8s`` step operator::

    python kfp_volume_snapshots.py [--step-operator NAME] [--image IMAGE]
        [--storage-class CLASS] [--snapshot-class CLASS] [--kubeconfig PATH] [--namespace NS]

(also the ``K8SSO_*`` variables of the same names). It prints ``RESULT {...}``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
from pathlib import Path

from zenml import pipeline, step
from zenml.config import DockerSettings

from k8s_step_operator.steps import VOLUME_MODE_RWO, cleanup_run_resources, snapshot_step, volume_step


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step-operator", default=os.environ.get("K8SSO_STEP_OPERATOR", "k8s-local"))
    parser.add_argument("--image", default=os.environ.get("K8SSO_IMAGE", "registry.k8sso.local/k8sso/step:latest"))
    parser.add_argument("--storage-class", default=os.environ.get("K8SSO_STORAGE_CLASS"))
    parser.add_argument("--snapshot-class", default=os.environ.get("K8SSO_SNAPSHOT_CLASS"))
    parser.add_argument("--kubeconfig", default=os.environ.get("K8SSO_KUBECONFIG"))
    parser.add_argument("--namespace", default=os.environ.get("K8SSO_NAMESPACE"))
    return parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])


OPTIONS = _options()
CLUSTER = {"namespace": OPTIONS.namespace, "kubeconfig": OPTIONS.kubeconfig}
POD = {"docker": DockerSettings(skip_build=True, parent_image=OPTIONS.image)}
ON_POD = {"step_operator": OPTIONS.step_operator, "settings": {**POD, "step_operator": {"pvolumes": {"/data": "pvc"}}}}


create_volume = volume_step(
    "vol1", size="1Gi", modes=VOLUME_MODE_RWO, storage_class=OPTIONS.storage_class, name="create_volume", **CLUSTER
)


def snapshot(name: str):
    """A snapshot step whose source PVC is bound when it is called (``volume=``)."""
    return snapshot_step(name, name=name, snapshot_class=OPTIONS.snapshot_class, **CLUSTER)


step1_snap, step2_snap, step3_snap = snapshot("step1_snap"), snapshot("step2_snap"), snapshot("step3_snap")
restore_volume = volume_step(
    "restored", storage_class=OPTIONS.storage_class, name="restore_volume", **CLUSTER
)


@step(**ON_POD)
def step1_ingest(pvc: str, text: str) -> str:
    """mkdir /data/step1 && <text> | gzip -c > /data/step1/file1.gz"""
    Path("/data/step1").mkdir(parents=True, exist_ok=True)
    Path("/data/step1/file1.gz").write_bytes(gzip.compress(text.encode()))
    return pvc


@step(**ON_POD)
def step2_gunzip(pvc: str, after_snapshot: str) -> str:
    """mkdir /data/step2 && gunzip /data/step1/file1.gz -c > /data/step2/file1"""
    print(f"{after_snapshot} holds the state before this step")
    Path("/data/step2").mkdir(parents=True, exist_ok=True)
    Path("/data/step2/file1").write_bytes(gzip.decompress(Path("/data/step1/file1.gz").read_bytes()))
    return pvc


@step(**ON_POD)
def step3_copy(pvc: str, after_snapshot: str) -> str:
    """mkdir /data/step3 && cp -av /data/step2/file1 /data/step3/file3"""
    print(f"{after_snapshot} holds the state before this step")
    Path("/data/step3").mkdir(parents=True, exist_ok=True)
    shutil.copyfile("/data/step2/file1", "/data/step3/file3")
    return pvc


@step(**ON_POD)
def step4_output(pvc: str, after_snapshot: str) -> str:
    """cat /data/step2/file1 /data/step3/file3"""
    text = Path("/data/step2/file1").read_text() + Path("/data/step3/file3").read_text()
    print(text, end="")
    return text


@step(**ON_POD)
def read_restored(pvc: str) -> list:
    """List what the volume restored from step3_snap holds."""
    return sorted(str(p.relative_to("/data")) for p in Path("/data").rglob("*") if p.is_file())


@pipeline(enable_cache=False, on_success=cleanup_run_resources, on_failure=cleanup_run_resources)
def volume_snapshotop_sequential(text: str = "hello from the KFP volume snapshot sample\n") -> None:
    """Each step works on the same volume; a snapshot is taken after each write."""
    pvc, _manifest, _size = create_volume()
    pvc = step1_ingest(pvc, text)
    snap1, _m1, _s1 = step1_snap(volume=pvc)
    pvc = step2_gunzip(pvc, snap1)
    snap2, _m2, _s2 = step2_snap(volume=pvc)
    pvc = step3_copy(pvc, snap2)
    snap3, _m3, _s3 = step3_snap(volume=pvc)
    step4_output(pvc, snap3)
    restored, _rm, _rs = restore_volume(data_source=snap3)
    read_restored(restored)


if __name__ == "__main__":
    from zenml.client import Client

    run = Client().get_pipeline_run(volume_snapshotop_sequential().id)
    outputs = {name: {k: a[0].load() for k, a in s.outputs.items()} for name, s in run.steps.items()}
    print("RESULT " + json.dumps(
        {
            "status": str(run.status.value),
            "snapshots": [outputs[n]["name"] for n in ("step1_snap", "step2_snap", "step3_snap")],
            "restore_sizes": [outputs[n]["size"] for n in ("step1_snap", "step2_snap", "step3_snap")],
            "output": outputs["step4_output"]["output"],
            "restored_files": outputs["read_restored"]["output"],
            "restored_size": outputs["restore_volume"]["size"],
        }
    ))

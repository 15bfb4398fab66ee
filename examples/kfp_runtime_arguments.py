"""KFP's PipelineParams in ZenML: resource, volume and snapshot arguments bound when the step is called.

In KFP v1 ``resource_name``, ``size``, ``storage_class``, ``annotations`` and
``data_source`` of a VolumeOp, ``pvc``/``volume``, ``snapshot_class`` and
``annotations`` of a VolumeSnapshotOp, and any field of a ResourceOp's
``k8s_resource`` may be PipelineParams::

    @dsl.pipeline
    def p(size: str = "1Gi", storage_class: str = "standard"):
        sizing = size_op()
        vop = dsl.VolumeOp(name="data", resource_name="data", size=sizing.output, storage_class=storage_class)
        snap = dsl.VolumeSnapshotOp(name="snap", resource_name="snap", volume=vop.volume,
                                    snapshot_class=snapshot_class)
        dsl.ResourceOp(name="record", k8s_resource={..., "data": {"size": sizing.output}})

Here the same arguments are step inputs: bound to a pipeline parameter or an
upstream output when the step is called; fields of a manifest are written
``{{inputs.NAME}}``. It prints ``RESULT {...}``.
"""

from __future__ import annotations

import json

from zenml import pipeline, step

from k8s_step_operator.steps import cleanup_run_resources, resource_step, snapshot_step, volume_step

make_volume = volume_step(name="data")                 # resource_name, size, storage_class: bound below
take_snapshot = snapshot_step("data-snap", name="snap")
record = resource_step(
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "{{inputs.config_name}}"},
     "data": {"volume": "{{inputs.volume}}", "size": "{{inputs.size}}", "note": "restore size {{inputs.size}}"}},
    name="record", cleanup="on-run-end",
)


@step
def choose_size() -> str:
    """An upstream step deciding the volume's size (KFP: an op's output)."""
    return "64Mi"


@pipeline(enable_cache=False, on_success=cleanup_run_resources, on_failure=cleanup_run_resources)
def runtime_arguments(storage_class: str = "standard", snapshot_class: str = "local-snapshots",
                      team: str = "ml") -> None:
    """A volume sized by an upstream step, its snapshot, and a ConfigMap recording both."""
    size = choose_size()
    volume, _manifest, _bound = make_volume(
        resource_name="data", size=size, storage_class=storage_class, annotations={"team": team}
    )
    snap, _snap_manifest, restore_size = take_snapshot(volume=volume, snapshot_class=snapshot_class)
    record(config_name=snap, volume=volume, size=restore_size)


if __name__ == "__main__":
    from zenml.client import Client

    run = Client().get_pipeline_run(runtime_arguments().id)
    outputs = {name: {k: a[0].load() for k, a in s.outputs.items()} for name, s in run.steps.items()}
    print("RESULT " + json.dumps({
        "status": str(run.status.value),
        "volume": outputs["data"]["name"],
        "volume_manifest": outputs["data"]["manifest"],
        "snapshot": outputs["snap"]["name"],
        "snapshot_class": outputs["snap"]["manifest"]["spec"].get("volumeSnapshotClassName"),
        "config": outputs["record"]["manifest"],
    }))

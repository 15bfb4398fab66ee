"""Volume and snapshot step options and manifests (no cluster)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from k8s_step_operator.steps.resource_spec import ResourceSpecError
from k8s_step_operator.steps.volume_spec import (
    SNAPSHOT_OPTIONS,
    VOLUME_MODE_ROM,
    VOLUME_MODE_RWM,
    VOLUME_MODE_RWO,
    VOLUME_OPTIONS,
    DataSource,
    SnapshotSpec,
    VolumeSpec,
    build_snapshot_spec,
    build_volume_spec,
    claim_name_of,
    final_name,
    normalize_modes,
    parse_data_source,
    pvc_manifest,
    quantity_at_least,
    refused_modes_message,
    single_node_class_refuses,
    snapshot_manifest,
)

PVC: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "PersistentVolumeClaim",
    "metadata": {"name": "data"},
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
}


def volume_error(*args: Any, **kwargs: Any) -> str:
    with pytest.raises(ResourceSpecError) as info:
        build_volume_spec(*args, **kwargs)
    return str(info.value)


def snapshot_error(*args: Any, **kwargs: Any) -> str:
    with pytest.raises(ResourceSpecError) as info:
        build_snapshot_spec(*args, **kwargs)
    return str(info.value)


class TestVolumeBadInput:
    @pytest.mark.parametrize("size", ["1GB", "lots", "1 Gi", "Gi", "-1Gi"])
    def test_bad_size(self, size: str) -> None:
        message = volume_error("data", size)
        assert message.startswith("size:")
        assert "quantit" in message

    def test_bad_size_names_the_allowed_suffixes(self) -> None:
        message = volume_error("data", "10GB")
        assert "Ki, Mi, Gi" in message and "e.g." in message

    def test_zero_size(self) -> None:
        assert volume_error("data", "0").startswith("size: '0' is not allowed; a volume needs a size > 0")

    def test_missing_size(self) -> None:
        assert volume_error("data").startswith("size: required")

    def test_missing_resource_name(self) -> None:
        assert volume_error(None, "1Gi").startswith("resource_name: required")
        assert volume_error("___", "1Gi").startswith("resource_name: '___' has no letters or digits")

    def test_k8s_resource_and_size(self) -> None:
        message = volume_error(size="1Gi", k8s_resource=PVC)
        assert message == (
            "k8s_resource: give either k8s_resource or size, never both (k8s_resource is the whole PersistentVolumeClaim)"
        )

    def test_k8s_resource_and_other_options(self) -> None:
        message = volume_error("data", k8s_resource=PVC, storage_class="standard", modes=VOLUME_MODE_RWM)
        assert message.startswith("k8s_resource: give either k8s_resource or storage_class, modes, resource_name")

    def test_k8s_resource_wrong_kind(self) -> None:
        message = volume_error(k8s_resource={**PVC, "kind": "ConfigMap"})
        assert message == "k8s_resource.kind: 'ConfigMap' is not allowed here; allowed: PersistentVolumeClaim"

    def test_k8s_resource_without_name(self) -> None:
        assert volume_error(k8s_resource={**PVC, "metadata": {}}).startswith("k8s_resource.metadata.name: missing")

    def test_bad_mode(self) -> None:
        message = volume_error("data", "1Gi", modes=["ReadWriteSometimes"])
        assert message.startswith("modes: 'ReadWriteSometimes' is not an access mode; allowed: ReadWriteOnce (RWO)")

    def test_empty_modes(self) -> None:
        assert volume_error("data", "1Gi", modes=[]).startswith("modes: expected a non-empty list")

    def test_bad_data_source(self) -> None:
        assert volume_error("data", "1Gi", data_source="secret/x").startswith(
            "data_source: 'secret/x': unknown kind prefix 'secret'; allowed:"
        )
        assert volume_error("data", "1Gi", data_source={"kind": "Pod", "name": "x"}).startswith(
            "data_source.kind: 'Pod' is not allowed; allowed: VolumeSnapshot, PersistentVolumeClaim"
        )

    def test_bad_data_source_kind(self) -> None:
        assert volume_error("data", "1Gi", data_source_kind="Snapshot").startswith(
            "data_source_kind: 'Snapshot' is not allowed; allowed: VolumeSnapshot, PersistentVolumeClaim"
        )

    def test_bad_annotations(self) -> None:
        assert volume_error("data", "1Gi", annotations={"bad key!": "x"}).startswith("annotations:")

    def test_bad_volume_mode(self) -> None:
        assert volume_error("data", "1Gi", volume_mode="Raw") == (
            "volume_mode: 'Raw' is not allowed; allowed: Filesystem, Block"
        )

    def test_bad_conditions(self) -> None:
        with pytest.raises(ResourceSpecError, match="^success_condition: cannot parse condition"):
            VOLUME_OPTIONS.replace(success_condition="status.phase = = Bound")

    def test_bad_cleanup(self) -> None:
        with pytest.raises(ResourceSpecError, match="^cleanup: 'later' is not allowed; allowed: never, on-run-end, on-success"):
            VOLUME_OPTIONS.replace(cleanup="later")


class TestVolumeGoodInput:
    @pytest.mark.parametrize("size", ["1Gi", "1.5Gi", "500M", "1e9", 1073741824, "100Ki"])
    def test_valid_sizes(self, size: Any) -> None:
        assert build_volume_spec("data", size).size == str(size)

    def test_defaults(self) -> None:
        spec = build_volume_spec("data", "1Gi")
        assert spec.modes == VOLUME_MODE_RWO
        assert spec.cleanup == "on-run-end"
        assert spec.fail_on_events == ("ProvisioningFailed",)
        assert VolumeSpec.from_dict(spec.to_dict()) == spec

    def test_modes(self) -> None:
        assert normalize_modes(VOLUME_MODE_RWM) == ["ReadWriteMany"]
        assert normalize_modes(["RWO", "rox", "ReadWriteOnce"]) == ["ReadWriteOnce", "ReadOnlyMany"]
        assert normalize_modes("RWX") == ["ReadWriteMany"]
        assert build_volume_spec("d", "1Gi", modes=VOLUME_MODE_ROM).modes == ("ReadOnlyMany",)

    def test_size_may_come_from_the_data_source(self) -> None:
        spec = build_volume_spec("restored", data_source="snap-1")
        assert spec.size is None
        assert spec.data_source == {"kind": "VolumeSnapshot", "name": "snap-1", "apiGroup": "snapshot.storage.k8s.io"}

    def test_k8s_resource(self) -> None:
        spec = build_volume_spec(k8s_resource=PVC)
        assert spec.k8s_resource == PVC and spec.resource_name is None

    def test_pvc_manifest(self) -> None:
        spec = build_volume_spec(
            "data", "2Gi", storage_class="standard", modes=VOLUME_MODE_RWM, annotations={"a": "b"}, volume_name="pv-1"
        )
        body = pvc_manifest(spec, "run-data", size="2Gi", data_source=DataSource("VolumeSnapshot", "s", "snapshot.storage.k8s.io"),
                            labels={"l": "v"})
        assert body == {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "run-data", "labels": {"l": "v"}, "annotations": {"a": "b"}},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "2Gi"}},
                "storageClassName": "standard",
                "volumeName": "pv-1",
                "dataSource": {"kind": "VolumeSnapshot", "name": "s", "apiGroup": "snapshot.storage.k8s.io"},
            },
        }

    def test_pvc_manifest_without_class_leaves_default(self) -> None:
        body = pvc_manifest(build_volume_spec("d", "1Gi"), "d", size="1Gi")
        assert "storageClassName" not in body["spec"]
        empty = pvc_manifest(build_volume_spec("d", "1Gi", storage_class=""), "d", size="1Gi")
        assert empty["spec"]["storageClassName"] == ""


class TestDataSourceAndNames:
    def test_forms(self) -> None:
        assert parse_data_source("snap") == DataSource("VolumeSnapshot", "snap", "snapshot.storage.k8s.io")
        assert parse_data_source("pvc/src") == DataSource("PersistentVolumeClaim", "src", "")
        assert parse_data_source("src", default_kind="PersistentVolumeClaim") == DataSource("PersistentVolumeClaim", "src", "")
        assert parse_data_source("VolumeSnapshot/s").kind == "VolumeSnapshot"
        ref = client.V1TypedLocalObjectReference(api_group="snapshot.storage.k8s.io", kind="VolumeSnapshot", name="s")
        assert parse_data_source(ref) == DataSource("VolumeSnapshot", "s", "snapshot.storage.k8s.io")
        assert parse_data_source(None) is None

    def test_final_name(self) -> None:
        assert final_name("My_PVC", "train-2024_01_01-10_00_00_000001", True) == "train-2024-01-01-10-00-00-000001-my-pvc"
        assert final_name("My_PVC", "run", False) == "my-pvc"
        assert final_name("pvc", None, True) == "pvc"
        long = final_name("x" * 80, "run", True)
        assert len(long) <= 63

    def test_single_node_provisioners(self) -> None:
        ebs = {"provisioner": "ebs.csi.aws.com"}
        assert single_node_class_refuses(ebs, ["ReadWriteMany", "ReadWriteOnce"]) == ["ReadWriteMany"]
        assert single_node_class_refuses(ebs, ["ReadWriteOnce"]) == []
        # Neither a class parameter nor an unknown provisioner decides: the provisioner's answer does.
        other = {"provisioner": "csi.example.com", "parameters": {"accessModes": "ReadWriteOnce"}}
        assert single_node_class_refuses(other, ["ReadWriteMany"]) == []

    def test_provisioning_failure_about_modes(self) -> None:
        ours = ("PersistentVolumeClaim ns/c: Warning event ProvisioningFailed: rpc error: code = InvalidArgument "
                "desc = access mode MULTI_NODE_MULTI_WRITER is not supported")
        assert refused_modes_message("local-rwo", ["ReadWriteMany"], ours) == (
            f"modes: storage class 'local-rwo' cannot provide ReadWriteMany; its provisioner refused the claim: {ours}")
        ebs = "rpc error: code = InvalidArgument desc = Volume capabilities MULTI_NODE_MULTI_WRITER not supported."
        assert refused_modes_message(None, ["ReadOnlyMany"], ebs).startswith(
            "modes: the default storage class cannot provide ReadOnlyMany;")
        assert refused_modes_message("x", ["ReadWriteOnce"], ours) is None  # the claim asked no multi-node mode
        assert refused_modes_message("x", ["ReadWriteMany"], "quota exceeded") is None  # not about modes

    def test_quantity_comparison(self) -> None:
        assert quantity_at_least("1Gi", "1073741824")
        assert not quantity_at_least("1G", "1Gi")


class TestSnapshot:
    def test_pvc_and_volume(self) -> None:
        assert snapshot_error("s", pvc="a", volume="b").startswith("pvc, volume: give exactly one of them")

    def test_no_source(self) -> None:
        assert snapshot_error("s").startswith("pvc, volume: give one of them")
        assert build_snapshot_spec("s", late_inputs=True).pvc is None

    def test_k8s_resource_and_pvc(self) -> None:
        body = {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot", "metadata": {"name": "s"}}
        assert snapshot_error(pvc="a", k8s_resource=body).startswith("k8s_resource: give either k8s_resource or pvc")
        old = {**body, "apiVersion": "snapshot.storage.k8s.io/v1alpha1"}
        assert snapshot_error(k8s_resource=old).startswith(
            "k8s_resource.apiVersion: 'snapshot.storage.k8s.io/v1alpha1' is not allowed; allowed: snapshot.storage.k8s.io/v1"
        )

    def test_volume_forms(self) -> None:
        volume = client.V1Volume(name="v", persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(claim_name="c"))
        assert build_snapshot_spec("s", volume=volume).pvc == "c"
        assert build_snapshot_spec("s", volume="vol-output").pvc == "vol-output"
        with pytest.raises(ResourceSpecError, match="volume: the volume has no persistentVolumeClaim.claimName"):
            claim_name_of({"name": "v", "emptyDir": {}})

    def test_defaults_and_manifest(self) -> None:
        spec = build_snapshot_spec("snap", pvc="data", snapshot_class="local-snapshots", annotations={"a": "b"})
        assert spec.success_condition == "status.readyToUse==true"
        assert spec.cleanup == "on-run-end"
        assert SnapshotSpec.from_dict(spec.to_dict()) == spec
        assert snapshot_manifest(spec, "run-snap", pvc="data") == {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": {"name": "run-snap", "annotations": {"a": "b"}},
            "spec": {"source": {"persistentVolumeClaimName": "data"}, "volumeSnapshotClassName": "local-snapshots"},
        }


class TestSpecDict:
    """The shared to_dict/from_dict (spec_codec.SpecCodec) as the volume and snapshot specs use it."""

    @pytest.mark.parametrize(
        "spec",
        [
            build_volume_spec(
                "data", "1Gi", modes=["rwx", "rox"], options=VOLUME_OPTIONS.replace(fail_on_events=["ProvisioningFailed", "Other"])
            ),
            build_snapshot_spec("snap", pvc="data", options=SNAPSHOT_OPTIONS.replace(fail_on_events="SnapshotFailed")),
        ],
        ids=["volume", "snapshot"],
    )
    def test_json_round_trip(self, spec: VolumeSpec | SnapshotSpec) -> None:
        data = spec.to_dict()
        assert isinstance(data["fail_on_events"], list)
        assert type(spec).from_dict(json.loads(json.dumps(data))) == spec

    def test_unknown_keys(self) -> None:
        with pytest.raises(ResourceSpecError, match=r"^spec: unknown keys \['bogus'\]$"):
            VolumeSpec.from_dict({"size": "1Gi", "bogus": 1})
        with pytest.raises(ResourceSpecError, match=r"^spec: unknown keys \['modes', 'size'\]$"):
            SnapshotSpec.from_dict({"pvc": "data", "size": "1Gi", "modes": ["ReadWriteOnce"]})

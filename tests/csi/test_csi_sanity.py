"""The upstream CSI sanity suite (csi-test v5, ``csi-sanity``) against our CSI driver.

The driver runs as it does in the local cluster: one process serving the controller service, one
serving the node service (bind mounts need root, as the local cluster does), sharing a state dir.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from k8sso_localcluster import csi, processes
from k8sso_localcluster.build_csi import CsiBinaries, ensure_csi


@pytest.fixture(scope="module")
def binaries() -> CsiBinaries:
    return ensure_csi()


@pytest.fixture
def driver(binaries: CsiBinaries) -> Iterator[tuple[Path, Path, Path]]:
    """A controller and a node process; yields (controller socket, node socket, work dir)."""
    work = Path(tempfile.mkdtemp(prefix="csi-sanity-", dir="/tmp"))
    controller, node = work / "controller.sock", work / "node.sock"
    procs = [
        processes.spawn(csi.driver_argv(binaries.driver, controller, work / "state"), work / "controller.log"),
        processes.spawn(csi.driver_argv(binaries.driver, node, work / "state", node_id="sanity-node"),
                        work / "node.log"),
    ]
    try:
        processes.wait_until(lambda: controller.exists() and node.exists(), 10, what="driver sockets")
        yield controller, node, work
    finally:
        for proc in procs:
            processes.stop(proc)
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)


def test_csi_sanity_suite_passes(binaries: CsiBinaries, driver: tuple[Path, Path, Path]) -> None:
    controller, node, work = driver
    result = subprocess.run(
        [str(binaries.sanity), f"--csi.endpoint={node}", f"--csi.controllerendpoint={controller}",
         f"--csi.mountdir={work / 'target'}", f"--csi.stagingdir={work / 'staging'}",
         "--ginkgo.no-color", "--ginkgo.timeout=5m", f"--ginkgo.json-report={work / 'report.json'}"],
        capture_output=True, text=True, timeout=600,
    )
    output = result.stdout + result.stderr
    summary = re.search(r"Ran (\d+) of (\d+) Specs.*\n.*?(\d+) Passed \| (\d+) Failed", output)
    assert result.returncode == 0 and summary, output[-6000:]
    ran, passed, failed = int(summary.group(1)), int(summary.group(3)), int(summary.group(4))
    assert failed == 0 and passed == ran, output[-3000:]
    # Skipped specs are those of capabilities the driver does not claim (ListVolumes, GetCapacity,
    # ControllerPublish, NodeStage, volume stats, ModifyVolume); what it does claim must have run.
    specs = json.loads((work / "report.json").read_text())[0]["SpecReports"]
    passed_texts = " | ".join(" ".join(r["ContainerHierarchyTexts"] + [r["LeafNodeText"]])
                              for r in specs if r["State"] == "passed")
    for area in ("CreateVolume", "DeleteVolume", "ValidateVolumeCapabilities", "CreateSnapshot", "DeleteSnapshot",
                 "ListSnapshots", "ExpandVolume", "NodePublishVolume", "NodeUnpublishVolume", "NodeGetInfo",
                 "GetPluginInfo", "Probe"):
        assert area in passed_texts, f"no passed sanity spec covers {area}"

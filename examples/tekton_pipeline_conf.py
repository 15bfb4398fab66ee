"""KFP-Tekton's pipeline-level configuration and KFP's PipelineVolume, as ``k8s`` step operator settings.

The KFP-Tekton original (``TektonPipelineConf``)::

    pipeline_conf = TektonPipelineConf()
    pipeline_conf.set_security_context(V1SecurityContext(run_as_user=0))
    pipeline_conf.set_automount_service_account_token(False)
    pipeline_conf.add_pipeline_env('ENV_NAME', 'VALUE')
    pipeline_conf.add_pipeline_workspace(workspace_name="new-ws", volume=V1Volume(
        name='data', persistent_volume_claim=V1PersistentVolumeClaimVolumeSource(claim_name='data-volume')),
        path_prefix='artifact_data/')
    pipeline_conf.add_pipeline_workspace(workspace_name="new-ws-template",
        volume_claim_template_spec=V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"], resources=V1ResourceRequirements(requests={"storage": "30Gi"})))
    echo.add_pod_annotation('workspaces', json.dumps({'new-ws-template': {"readOnly": True}}))

Here the same knobs are the step operator settings of the pipeline (ZenML hands them to every step
and merges a step's own settings into them): ``pod_settings.security_context``,
``pod_settings.automount_service_account_token``, ``pipeline_env`` and ``workspaces``. The reader
step makes a workspace read-only for itself, as the seed's per-task annotation does, and mounts
four more volumes through ``pvolumes`` (KFP's PipelineVolume): the volume step's claim at a
sub-path, read-only; a ConfigMap; a Secret; an emptyDir. The last step turns the token automount
back on: the run-end hook runs in its pod and deletes the volume and the run's workspace claim.

Run it from a ZenML repository whose active stack has a ``k8s`` step operator::

    python tekton_pipeline_conf.py --claim NAME --config-map NAME --secret NAME [--step-operator NAME]
        [--image IMAGE]

(the claim, ConfigMap — key ``greeting`` — and Secret — key ``token`` — must exist in the operator's
namespace; also ``K8SSO_STEP_OPERATOR``, ``K8SSO_IMAGE``). It prints ``RESULT {...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict

from zenml import pipeline, step
from zenml.config import DockerSettings

from k8s_step_operator.steps import cleanup_run_resources, volume_step

TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
GROUP = 4242


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step-operator", default=os.environ.get("K8SSO_STEP_OPERATOR", "k8s-local"))
    parser.add_argument("--image", default=os.environ.get("K8SSO_IMAGE", "registry.k8sso.local/k8sso/step:latest"))
    parser.add_argument("--claim", default="data-volume", help="an existing PVC: the `new-ws` workspace")
    parser.add_argument("--config-map", default="pipeline-conf", help="an existing ConfigMap with key `greeting`")
    parser.add_argument("--secret", default="pipeline-conf", help="an existing Secret with key `token`")
    return parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])


OPTIONS = _options()
DOCKER = DockerSettings(skip_build=True, parent_image=OPTIONS.image)

PIPELINE_CONF = {
    "pod_settings": {
        "security_context": {"runAsUser": 0, "supplementalGroups": [GROUP]},  # set_security_context
        "automount_service_account_token": False,  # set_automount_service_account_token
    },
    "pipeline_env": {"ENV_NAME": "VALUE"},  # add_pipeline_env
    "workspaces": {  # add_pipeline_workspace
        "new-ws": {"claim": OPTIONS.claim, "sub_path": "artifact_data/{run}"},
        "new-ws-template": {"claim_template": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}}},
    },
}

create_volume = volume_step("data", size="64Mi", name="data_volume")


def _seen() -> Dict[str, Any]:
    """What every step reports about the pipeline-level configuration it got."""
    return {"env": os.environ.get("ENV_NAME"), "uid": os.getuid(), "group": GROUP in os.getgroups(), "token": TOKEN.exists()}


def _writable(path: str) -> bool:
    try:
        Path(path).write_text("x")
        return True
    except OSError:
        return False


@step(step_operator=OPTIONS.step_operator, settings={
    "docker": DOCKER, "step_operator": {"pvolumes": {"/data": {"input": "pvc", "sub_path": "step1"}}}})
def writer(pvc: str) -> Dict[str, Any]:
    """Writes into the volume step's claim (its `step1` directory) and into both workspaces."""
    Path("/data/file1").write_text("1\n")
    Path("/workspace/new-ws/marker").write_text("written by writer\n")
    Path("/workspace/new-ws-template/shared.txt").write_text("shared within the run\n")
    return {**_seen(), "pvc": pvc}


@step(step_operator=OPTIONS.step_operator, settings={"docker": DOCKER, "step_operator": {
    "pvolumes": {
        "/in": {"input": "pvc", "sub_path": "step1", "read_only": True},
        "/cfg": {"volume": {"configMap": {"name": OPTIONS.config_map}}},
        "/creds": {"volume": {"secret": {"secretName": OPTIONS.secret}}},
        "/scratch": {"volume": {"emptyDir": {}}},
    },
    "workspaces": {"new-ws-template": {"read_only": True}},  # the seed's per-task {"readOnly": true}
}})
def reader(pvc: str, wrote: Dict[str, Any]) -> Dict[str, Any]:
    """Reads what the writer left, through read-only mounts, and the ConfigMap and Secret."""
    return {
        **_seen(),
        "file1": Path("/in/file1").read_text(),
        "in_writable": _writable("/in/other"),
        "greeting": Path("/cfg/greeting").read_text(),
        "token_file": Path("/creds/token").read_text(),
        "scratch_writable": _writable("/scratch/x"),
        "marker": Path("/workspace/new-ws/marker").read_text(),
        "shared": Path("/workspace/new-ws-template/shared.txt").read_text(),
        "template_writable": _writable("/workspace/new-ws-template/other"),
        "writer": wrote,
    }


@step(step_operator=OPTIONS.step_operator, settings={
    "docker": DOCKER, "step_operator": {"pod_settings": {"automount_service_account_token": True}}})
def final(report: Dict[str, Any]) -> Dict[str, Any]:
    """The run-end hook runs here and needs the pod's ServiceAccount token: this step mounts it."""
    return {**report, "final": _seen()}


@pipeline(enable_cache=False, on_success=cleanup_run_resources, on_failure=cleanup_run_resources,
          settings={"step_operator": PIPELINE_CONF})
def pipeline_conf() -> None:
    """Pipeline-level security context, token automount, env and workspaces; PipelineVolumes of any kind."""
    pvc, _manifest, _size = create_volume()
    final(reader(pvc, writer(pvc)))


if __name__ == "__main__":
    from zenml.client import Client

    run = Client().get_pipeline_run(pipeline_conf().id)
    outputs = {name: {k: a[0].load() for k, a in s.outputs.items()} for name, s in run.steps.items()}
    print("RESULT " + json.dumps({
        "status": str(run.status.value), "run_name": run.name, "run_id": str(run.id),
        "report": outputs.get("final", {}).get("output"),
    }))

"""The Pod a step would get for given settings, built without contacting a cluster.

The image, snapshot id, run name and step run id are placeholders; the pod name
ends in a hash of the (placeholder) step run id, as the real one does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .flavor import K8sStepOperatorConfig
    from .settings import K8sStepOperatorSettings

DEFAULT_IMAGE = "<zenml-step-image>"
DEFAULT_STEP = "my_step"
PLACEHOLDER_STEP_RUN_ID = "00000000-0000-0000-0000-000000000000"
ENTRYPOINT_CONFIG = "zenml.step_operators.step_operator_entrypoint_configuration.StepOperatorEntrypointConfiguration"


def build_preview_pod(
    settings: "K8sStepOperatorSettings",
    config: Optional["K8sStepOperatorConfig"],
    pipeline: str,
    step_name: str,
    image: str,
    namespace: Optional[str],
) -> dict:
    """The Pod manifest; namespace: the given one, else the settings', else the component's (or its default).

    Raises ``ValueError`` when the settings cannot make a pod.
    """
    from .flavor import K8sStepOperatorConfig
    from .manifest import StepIdentity, build_pod

    ns = namespace or settings.kubernetes_namespace or (config or K8sStepOperatorConfig()).kubernetes_namespace
    identity = StepIdentity(
        run_name=f"{pipeline}-run",
        pipeline_name=pipeline,
        step_name=step_name,
        step_run_id=PLACEHOLDER_STEP_RUN_ID,
        run_id=PLACEHOLDER_STEP_RUN_ID,
    )
    command = [
        "python", "-m", "zenml.entrypoints.entrypoint",
        "--entrypoint_config_source", ENTRYPOINT_CONFIG,
        "--snapshot_id", "<snapshot-id>",
        "--step_name", step_name,
        "--step_run_id", PLACEHOLDER_STEP_RUN_ID,
    ]  # fmt: skip
    from .settings_files import pod_template_of

    return build_pod(settings, identity, image, command, ns, template=pod_template_of(settings))


def preview_header(pod: dict, step: str, pipeline: str, component: Optional[str]) -> str:
    """Comment lines saying what in the rendered pod is a placeholder and where ZenML's environment goes."""
    name = pod["metadata"]["name"]
    source = f" overlaid on component `{component}`" if component else ""
    return "\n".join(
        [
            f"# Pod for step `{step}` of pipeline `{pipeline}`{source}, rendered without contacting a cluster.",
            "# Placeholders: the image, the snapshot id, the run name and the step run id (the pod name",
            "# ends in a hash of the real step run id).",
            "# ZenML's environment (store credentials and secret values) is NOT in the pod: its values go into",
            f"# the Secret `{name}-env` (or the one of the steps submitted with it), owned by the Job, and the",
            "# step container reads each variable by name (env[].valueFrom.secretKeyRef; not shown here).",
        ]
    )

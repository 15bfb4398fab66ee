"""The preflight: a run whose later step the cluster would refuse fails at submission, before its
first step runs, naming that step and the setting. Real ZenML runs with run-config YAML (the way a
typo usually arrives), against the local cluster's API server."""

from __future__ import annotations

import yaml
from kubernetes import client

from k8s_step_operator.manifest import LABEL_PIPELINE

from .conftest import ZenMLProject


def _run_with_third_step(zenml_project: ZenMLProject, api: client.ApiClient, name: str, settings: dict) -> str:
    config = zenml_project.root / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"steps": {"third": {"settings": {"step_operator": settings}}}}))
    proc = zenml_project.pipeline("preflight", "--config", str(config))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "FIRST STEP RAN" not in output, output  # nothing ran
    jobs = client.BatchV1Api(api).list_namespaced_job(
        zenml_project.namespace, label_selector=f"{LABEL_PIPELINE}=preflight_pipeline"
    )
    assert jobs.items == [], [j.metadata.name for j in jobs.items]  # nothing was created
    return output


def test_a_mount_naming_no_volume_in_the_third_step_fails_the_run_at_submission(
    zenml_project: ZenMLProject, api_client: client.ApiClient
) -> None:
    output = _run_with_third_step(
        zenml_project, api_client, "mount", {"pod_settings": {"volume_mounts": [{"name": "data", "mountPath": "/data"}]}}
    )
    assert "preflight of step operator `k8s-local`: 1 of 3 step(s) would be refused" in output, output
    assert "step `third`: pod_settings.volume_mounts[0].name: no volume named 'data' (volumes: none)" in output, output


def test_what_only_the_api_server_knows_is_found_by_its_dry_run(
    zenml_project: ZenMLProject, api_client: client.ApiClient
) -> None:
    output = _run_with_third_step(zenml_project, api_client, "account", {"service_account_name": "nobody-by-that-name"})
    assert "step `third`: service_account_name:" in output, output
    assert 'serviceaccount "nobody-by-that-name" not found' in output, output


def test_preflight_false_lets_the_run_start(zenml_project: ZenMLProject) -> None:
    """Turned off, the same mistake surfaces only when the third step is submitted, after two ran."""
    config = zenml_project.root / "off.yaml"
    config.write_text(yaml.safe_dump({
        "settings": {"step_operator": {"preflight": False}},
        "steps": {"third": {"settings": {"step_operator": {"service_account_name": "nobody-by-that-name"}}}},
    }))
    proc = zenml_project.pipeline("preflight", "--config", str(config))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "FIRST STEP RAN" in output, output
    assert 'serviceaccount "nobody-by-that-name" not found' in output, output

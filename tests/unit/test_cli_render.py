"""`k8s-step-operator render`: settings file in, Pod YAML out, no cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from k8s_step_operator import settings_files
from k8s_step_operator.cli import main
from k8s_step_operator.flavor import K8sStepOperatorConfig

# The settings of the example on ZenML's "Kubernetes Step Operator" page (seed 004), as YAML.
SEED_004_SETTINGS = """\
pod_settings:
  node_selectors:
    cloud.google.com/gke-nodepool: ml-pool
    kubernetes.io/arch: amd64
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions:
              - key: gpu-type
                operator: In
                values: [nvidia-tesla-v100, nvidia-tesla-p100]
  tolerations:
    - {key: gpu, operator: Equal, value: present, effect: NoSchedule}
    - {key: high-priority, operator: Exists, effect: PreferNoSchedule}
  resources:
    requests: {cpu: "2", memory: 4Gi, nvidia.com/gpu: "1"}
    limits: {cpu: "4", memory: 8Gi, nvidia.com/gpu: "1"}
  annotations:
    prometheus.io/scrape: "true"
    prometheus.io/port: "8080"
  volumes:
    - name: data-volume
      persistentVolumeClaim: {claimName: ml-data-pvc}
    - name: config-volume
      configMap: {name: ml-config}
  volume_mounts:
    - {name: data-volume, mountPath: /mnt/data}
    - {name: config-volume, mountPath: /etc/ml-config, readOnly: true}
  host_ipc: true
  image_pull_secrets: [regcred, gcr-secret]
  labels: {app: ml-pipeline, environment: production, team: data-science}
kubernetes_namespace: ml-pipelines
service_account_name: zenml-pipeline-runner
"""


def _write(tmp_path: Path, text: str, name: str = "settings.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _render(*args: str) -> Result:
    return CliRunner().invoke(main, ["render", *args])


def _pod(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    pod = yaml.safe_load(result.stdout)
    assert pod["kind"] == "Pod"
    return pod


def _main(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "main")


def test_render_seed_004_example(tmp_path: Path) -> None:
    result = _render("--settings", _write(tmp_path, SEED_004_SETTINGS), "--step", "trainer", "--pipeline", "training")
    pod = _pod(result)
    spec, main_container = pod["spec"], _main(pod)
    assert spec["nodeSelector"] == {"cloud.google.com/gke-nodepool": "ml-pool", "kubernetes.io/arch": "amd64"}
    assert spec["tolerations"] == [
        {"key": "gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"},
        {"key": "high-priority", "operator": "Exists", "effect": "PreferNoSchedule"},
    ]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["nvidia-tesla-v100", "nvidia-tesla-p100"]
    assert main_container["resources"]["limits"] == {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "1"}
    assert main_container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert spec["volumes"] == [
        {"name": "data-volume", "persistentVolumeClaim": {"claimName": "ml-data-pvc"}},
        {"name": "config-volume", "configMap": {"name": "ml-config"}},
    ]
    assert main_container["volumeMounts"][1] == {"name": "config-volume", "mountPath": "/etc/ml-config", "readOnly": True}
    labels = pod["metadata"]["labels"]
    assert {k: labels[k] for k in ("app", "environment", "team")} == {
        "app": "ml-pipeline",
        "environment": "production",
        "team": "data-science",
    }
    assert labels["step"] == "trainer" and labels["pipeline"] == "training"
    assert labels["app.kubernetes.io/managed-by"] == "k8s-step-operator"
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["metadata"]["namespace"] == "ml-pipelines"
    assert spec["serviceAccountName"] == "zenml-pipeline-runner"
    assert spec["hostIPC"] is True
    assert spec["imagePullSecrets"] == [{"name": "regcred"}, {"name": "gcr-secret"}]
    assert spec["restartPolicy"] == "Never"
    assert main_container["command"][:3] == ["python", "-m", "zenml.entrypoints.entrypoint"]
    assert main_container["command"][main_container["command"].index("--step_name") + 1] == "trainer"


def test_render_puts_no_environment_values_in_the_pod(tmp_path: Path) -> None:
    result = _render("--settings", _write(tmp_path, SEED_004_SETTINGS))
    pod = _pod(result)
    main_container = _main(pod)
    secret = pod["metadata"]["name"] + "-env"
    assert "env" not in main_container and "envFrom" not in main_container
    assert "ZENML_" not in result.stdout
    assert "value:" not in yaml.safe_dump(pod["spec"]["containers"])
    assert f"the Secret `{secret}`" in result.stdout  # the note, as a YAML comment
    assert "valueFrom.secretKeyRef" in result.stdout
    assert result.stdout.startswith("# ")


def test_render_image_and_namespace_options(tmp_path: Path) -> None:
    pod = _pod(_render("--settings", _write(tmp_path, SEED_004_SETTINGS), "--image", "reg/img:1", "--namespace", "x"))
    assert _main(pod)["image"] == "reg/img:1"
    assert pod["metadata"]["namespace"] == "x"
    plain = _pod(_render("--settings", _write(tmp_path, "pod_settings: {}\n", "empty.yaml")))
    assert plain["metadata"]["namespace"] == "zenml"  # the flavor's default
    assert "serviceAccountName" not in plain["spec"]


def test_render_invalid_quantity_exits_2_naming_the_field(tmp_path: Path) -> None:
    bad = "pod_settings:\n  resources:\n    limits: {cpu: 2 cores}\n"
    result = _render("--settings", _write(tmp_path, bad))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "pod_settings.resources.limits['cpu']: '2 cores' is not a valid quantity" in result.stderr


def test_render_unknown_pod_setting_exits_2(tmp_path: Path) -> None:
    result = _render("--settings", _write(tmp_path, "pod_settings: {node_selector: {a: b}}\n"))
    assert result.exit_code == 2
    assert "pod_settings.node_selector: unknown field (did you mean 'node_selectors'?)" in result.stderr


def test_render_type_error_names_the_field(tmp_path: Path) -> None:
    result = _render("--settings", _write(tmp_path, json.dumps({"startup_timeout": "soon"}), "s.json"))
    assert result.exit_code == 2
    assert "startup_timeout:" in result.stderr


def test_render_unknown_top_level_setting_is_dropped_with_a_note(tmp_path: Path) -> None:
    text = "pod_settings: {labels: {a: b}}\nkubernetes_context: ctx\nnot_a_setting: 1\n"
    result = _render("--settings", _write(tmp_path, text))
    pod = _pod(result)
    assert pod["metadata"]["labels"]["a"] == "b"
    assert "`not_a_setting` is not a step setting" in result.stderr
    assert "`kubernetes_context` is not a step setting" in result.stderr


def test_render_settings_mapping_and_json(tmp_path: Path) -> None:
    data = {"step_operator.k8s": {"pod_settings": {"node_selectors": {"pool": "gpu"}}}, "docker": {"x": 1}}
    pod = _pod(_render("--settings", _write(tmp_path, json.dumps(data), "s.json")))
    assert pod["spec"]["nodeSelector"] == {"pool": "gpu"}
    dup = {"step_operator": {}, "step_operator.k8s": {}}
    result = _render("--settings", _write(tmp_path, json.dumps(dup), "dup.json"))
    assert result.exit_code == 2 and "duplicate step operator settings" in result.stderr


RUN_CONFIG = """\
settings:
  step_operator:
    pod_settings:
      labels: {team: ml}
      node_selectors: {pool: cpu}
steps:
  trainer:
    step_operator: gpu-operator
    settings:
      step_operator:
        pod_settings:
          labels: {stage: train}
          node_selectors: {pool: gpu}
          resources: {limits: {nvidia.com/gpu: 1}}
  evaluator:
    settings:
      step_operator:
        service_account_name: evaluator
  loader:
    settings:
      step_operator.kubernetes:
        pod_settings: {labels: {ignored: "yes"}}
"""


def test_render_run_config_merges_step_over_pipeline(tmp_path: Path) -> None:
    path = _write(tmp_path, RUN_CONFIG, "run.yaml")
    result = _render("--settings", path, "--step", "trainer")
    pod = _pod(result)
    labels = pod["metadata"]["labels"]
    assert labels["team"] == "ml" and labels["stage"] == "train"  # maps merge recursively, as in ZenML
    assert pod["spec"]["nodeSelector"] == {"pool": "gpu"}
    assert _main(pod)["resources"] == {"limits": {"nvidia.com/gpu": "1"}, "requests": {"memory": "400Mi"}}
    assert "pass --component gpu-operator" in result.stderr

    loader = _pod(_render("--settings", path, "--step", "loader"))
    assert "ignored" not in loader["metadata"]["labels"]  # another flavor's key
    assert loader["metadata"]["labels"]["team"] == "ml"

    ambiguous = _render("--settings", path)
    assert ambiguous.exit_code == 2 and "pick one with --step" in ambiguous.stderr


def test_render_run_config_only_pipeline_settings(tmp_path: Path) -> None:
    text = "settings:\n  step_operator:\n    pod_settings: {labels: {team: ml}}\nenable_cache: false\n"
    pod = _pod(_render("--settings", _write(tmp_path, text, "run.yaml"), "--step", "anything"))
    assert pod["metadata"]["labels"]["team"] == "ml"
    assert pod["metadata"]["labels"]["step"] == "anything"


def test_render_overlays_the_component_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = K8sStepOperatorConfig(
        kubernetes_namespace="from-component",
        kubernetes_context="ctx",
        service_account_name="component-sa",
        pod_settings={"labels": {"team": "platform", "cost-center": "42"}, "node_selectors": {"pool": "cpu"}},
    )
    asked: list[str] = []
    monkeypatch.setattr(settings_files, "component_config", lambda name: asked.append(name) or config)
    text = "pod_settings:\n  labels: {team: ds}\n  tolerations: [{key: gpu, operator: Exists}]\n"
    pod = _pod(_render("--settings", _write(tmp_path, text), "--component", "gpu-op"))
    assert asked == ["gpu-op"]
    assert pod["metadata"]["namespace"] == "from-component"
    assert pod["spec"]["serviceAccountName"] == "component-sa"
    labels = pod["metadata"]["labels"]
    assert labels["team"] == "ds" and labels["cost-center"] == "42"
    assert pod["spec"]["nodeSelector"] == {"pool": "cpu"}
    assert pod["spec"]["tolerations"] == [{"key": "gpu", "operator": "Exists"}]


def test_render_missing_or_broken_file(tmp_path: Path) -> None:
    missing = _render("--settings", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2
    broken = _render("--settings", _write(tmp_path, "pod_settings: [unclosed\n"))
    assert broken.exit_code == 2 and "not valid YAML/JSON" in broken.stderr
    scalar = _render("--settings", _write(tmp_path, "just text\n", "s2.yaml"))
    assert scalar.exit_code == 2 and "expected a mapping" in scalar.stderr

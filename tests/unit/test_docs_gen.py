"""The README's settings reference is generated from the models and must be current."""

import re
from pathlib import Path

from k8s_step_operator.docs_gen import BEGIN, END, render_into, settings_table
from k8s_step_operator.settings import K8sStepOperatorSettings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_reference_is_up_to_date():
    text = README.read_text()
    assert render_into(text) == text, "run: python -m k8s_step_operator.docs_gen README.md"


def test_table_lists_every_top_level_field():
    table = settings_table()
    for name in K8sStepOperatorSettings.model_fields:
        assert f"| `{name}` |" in table


def test_render_replaces_only_the_block():
    text = f"head\n{BEGIN}\nSTALE-BLOCK-CONTENT\n{END}\ntail\n"
    out = render_into(text)
    assert out.startswith("head\n") and out.endswith("\ntail\n") and "STALE-BLOCK-CONTENT" not in out


def _differences() -> dict[str, tuple[str, str]]:
    """The README's "Differences from ZenML's built-in operator" table: first cell -> (ZenML, ours)."""
    text = README.read_text()
    table = text.split("### Differences from ZenML's built-in operator", 1)[1].split("\n\n", 2)[1]
    rows = [line.strip("|").split(" | ") for line in table.splitlines()[2:]]
    return {cells[0].strip(): (cells[1].strip(), cells[2].strip()) for cells in rows}


def test_differences_table_labels_and_defaults_match_the_code():
    from zenml.integrations.kubernetes.flavors import KubernetesStepOperatorSettings

    from k8s_step_operator.manifest import StepIdentity, identity_labels
    from k8s_step_operator.settings import K8sStepOperatorSettings

    rows = _differences()
    zenml_labels, ours = rows["labels"]
    listed = set(re.findall(r"`([^`]+)`", zenml_labels))
    labels = identity_labels(StepIdentity("run", "pipe", "step", "id", "run-id", "project"))
    assert listed | set(re.findall(r"`([^`]+)`", ours)) == set(labels)
    assert listed == {"project_id", "run_id", "run_name", "pipeline", "step_run_id", "step_name"}
    assert KubernetesStepOperatorSettings().ttl_seconds_after_finished is None
    assert rows["`ttl_seconds_after_finished` default"] == ("none: Jobs stay for ever", "a day")
    assert K8sStepOperatorSettings().ttl_seconds_after_finished == 24 * 3600
    assert K8sStepOperatorSettings().default_memory_request == "400Mi" and "400Mi" in rows["default memory request"][1]


def test_readme_rbac_sentence_matches_the_permission_table():
    from k8s_step_operator import rbac

    text = " ".join(README.read_text().split("## RBAC", 1)[1].split("\n\n", 2)[1].split())
    for perm in rbac.OPERATOR_PERMISSIONS:
        resource = perm.resource
        assert f"`{resource}`" in text, resource
        for verb in perm.verbs:
            if not (resource == "pods" and verb == "get"):  # granted with list, see rbac.py
                assert re.search(rf"`{re.escape(resource)}` [^`]*\b{verb}\b", text), (resource, verb)

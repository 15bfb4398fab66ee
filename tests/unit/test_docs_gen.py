"""The README's settings reference is generated from the models and must be current."""

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

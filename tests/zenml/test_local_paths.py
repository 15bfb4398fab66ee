"""``local=True``: the host paths a step pod mounts come from the active stack's artifact store alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ..zenml_support import zenml_env

PROBE = """
import json, sys
from zenml.client import Client
from k8s_step_operator.step_operator import local_paths
client = Client()
if len(sys.argv) > 1:
    client.create_stack_component(name="far", flavor="local", component_type="artifact_store", configuration={"path": sys.argv[1]})
    client.create_stack(name="far-stack", components={"artifact_store": "far", "orchestrator": "default"})
    client.activate_stack("far-stack")
client.active_stack_model  # the store is up
heavy = ("zenml.deployers.", "zenml.image_builders.", "zenml.container_registries.")
loaded = set(sys.modules)
paths = local_paths()
by_paths = sorted(m for m in set(sys.modules) - loaded if m.startswith(heavy))
loaded = set(sys.modules)
client.active_stack
by_stack = sorted(m for m in set(sys.modules) - loaded if m.startswith(heavy))
print(json.dumps({"paths": paths, "by_paths": by_paths, "by_stack": bool(by_stack)}))
"""

def _probe(root: Path, *args: str) -> dict:
    script = root / "probe.py"  # a file: ZenML takes its source root from the main module
    script.write_text(PROBE)
    done = subprocess.run([sys.executable, str(script), *args], env=zenml_env(root), cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_config_dir_and_an_artifact_store_outside_it_are_mounted_without_building_the_stack(tmp_path: Path) -> None:
    config_dir = (tmp_path / ".zenconfig").resolve()
    # the default artifact store lives in the config dir; building the whole stack would import the modules of
    # every component (deployers, image builders, registries: seconds of CPU in a busy orchestrator)
    # (a fresh store imports them while it starts, so this first call shows only the paths)
    assert _probe(tmp_path)["paths"] == [str(config_dir)]
    far = tmp_path / "far-artifacts"
    far.mkdir()
    found = _probe(tmp_path, str(far))
    assert found["paths"] == [str(config_dir), str(far.resolve())]
    assert found["by_paths"] == [] and found["by_stack"]


REGISTRY_PROBE = """
import json, sys
from types import SimpleNamespace
from zenml.client import Client
from zenml.config import DockerSettings
from k8s_step_operator.step_operator import PREFLIGHT_IMAGE, K8sStepOperator
client = Client()
step = SimpleNamespace(config=SimpleNamespace(docker_settings=DockerSettings()))
without = K8sStepOperator._likely_image(None, step, "pipe")
client.create_stack_component(name="reg", flavor="default", component_type="container_registry", configuration={"uri": "registry.test:5000/"})
client.create_stack(name="reg-stack", components={"artifact_store": "default", "orchestrator": "default", "container_registry": "reg"})
client.activate_stack("reg-stack")
print(json.dumps({"without": without, "with": K8sStepOperator._likely_image(None, step, "pipe"), "fallback": PREFLIGHT_IMAGE}))
"""


def test_the_preflights_image_is_a_tag_in_the_active_stacks_container_registry(tmp_path: Path) -> None:
    """A step whose image is built after the preflight is dry-run as a tag in the stack's registry (so that
    admission rules about registries judge it); a stack without a registry gives the fallback image."""
    script = tmp_path / "probe.py"
    script.write_text(REGISTRY_PROBE)
    done = subprocess.run([sys.executable, str(script)], env=zenml_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["without"] == found["fallback"]
    assert found["with"] == "registry.test:5000/zenml:pipe-preflight"

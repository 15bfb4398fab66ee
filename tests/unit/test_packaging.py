"""What users install: the product's wheel carries the operator, not the local cluster (its own package)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _wheel(project: Path, out: Path) -> list[str]:
    """Build ``project``'s wheel from a copy (a build writes ``build/`` and ``*.egg-info`` next to its sources)."""
    copy = out / "project"
    for name in ("pyproject.toml", "README.md", "src"):
        if (project / name).is_dir():
            shutil.copytree(project / name, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif (project / name).exists():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(project / name, copy / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(copy)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    [wheel] = out.glob("*.whl")
    return zipfile.ZipFile(wheel).namelist()


def test_the_product_wheel_holds_no_local_cluster_code(tmp_path: Path) -> None:
    names = _wheel(ROOT, tmp_path / "product")
    modules = {n for n in names if n.endswith(".py")}
    assert "k8s_step_operator/step_operator.py" in modules and "k8s_step_operator/steps/factories.py" in modules
    assert not [n for n in names if "localcluster" in n or n.endswith((".go", "go.mod", "go.sum"))], names
    assert "k8s_step_operator/py.typed" in names


def test_the_local_cluster_is_a_package_of_its_own(tmp_path: Path) -> None:
    names = _wheel(ROOT / "localcluster", tmp_path / "cluster")
    assert "k8sso_localcluster/controlplane.py" in names and "k8sso_localcluster/csidriver/go.mod" in names
    assert not [n for n in names if n.startswith("k8s_step_operator/")], names
    # it depends on the product through nothing: no module of it imports k8s_step_operator (the step
    # image copies the product's files, by path)
    sources = (ROOT / "localcluster" / "src" / "k8sso_localcluster").rglob("*.py")
    pattern = re.compile(r"^\s*(from|import)\s+k8s_step_operator\b", re.M)
    assert not [p.name for p in sources if pattern.search(p.read_text())]

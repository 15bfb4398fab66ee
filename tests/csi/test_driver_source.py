"""Our CSI driver's Go sources: formatted as gofmt wants, and the cached binary keyed by their content."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from k8sso_localcluster import build_csi


def test_driver_sources_are_gofmt_clean() -> None:
    go = shutil.which("go")
    assert go, "Go is needed (scripts/setup.sh installs it)"
    goroot = subprocess.run([go, "env", "GOROOT"], capture_output=True, text=True, check=True).stdout.strip()
    gofmt = shutil.which("gofmt") or str(Path(goroot) / "bin" / "gofmt")  # every Go distribution ships it
    result = subprocess.run([gofmt, "-l", "."], cwd=build_csi.DRIVER_SOURCES, capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "", f"not gofmt-formatted: {result.stdout}"


def test_driver_binary_is_keyed_by_its_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    path = build_csi.driver_path()
    sources = build_csi._driver_sources()
    assert {"main.go", "go.mod", "go.sum"} <= set(sources)
    changed = dict(sources, **{"main.go": sources["main.go"] + b"\n// changed\n"})
    monkeypatch.setattr(build_csi, "_driver_sources", lambda: changed)
    assert build_csi.driver_path() != path and build_csi.driver_path().name == path.name

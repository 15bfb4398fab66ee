"""Build the upstream CSI sidecars, the CSI sanity suite and our CSI driver from Go modules, cached by version.

Each upstream binary is built inside a copy of its own module at the pinned version (taken from the
Go module cache), with that module's own ``go.mod``, ``go.sum`` and ``replace`` lines: ``go install
pkg@version`` refuses modules with replaces, and a wrapper module would ignore them. The VolumeSnapshot
CRDs are read from the snapshotter's client module at the same pinned version (``config/crd``).
Our driver (``csidriver/``, Go, kept in this package) is built from its source files with the
``go.mod`` and ``go.sum`` next to them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import yaml

from .build import _go_env, _run, cache_root, timed

PROVISIONER = ("github.com/kubernetes-csi/external-provisioner/v6", "v6.4.0")
SNAPSHOTTER = ("github.com/kubernetes-csi/external-snapshotter/v8", "v8.7.0")
SNAPSHOT_CLIENT = ("github.com/kubernetes-csi/external-snapshotter/client/v8", "v8.7.0")
RESIZER = ("github.com/kubernetes-csi/external-resizer/v2", "v2.3.0")
CSI_TEST = ("github.com/kubernetes-csi/csi-test/v5", "v5.6.0")

# binary -> (module, version, package inside the module)
UPSTREAM: dict[str, tuple[str, str, str]] = {
    "csi-provisioner": (*PROVISIONER, "./cmd/csi-provisioner"),
    "snapshot-controller": (*SNAPSHOTTER, "./cmd/snapshot-controller"),
    "csi-snapshotter": (*SNAPSHOTTER, "./cmd/csi-snapshotter"),
    "csi-resizer": (*RESIZER, "./cmd/csi-resizer"),
    "csi-sanity": (*CSI_TEST, "./cmd/csi-sanity"),
}
# Replaces of a module that point into its own repository outside the module (not in the module zip).
LOCAL_REPLACES: dict[str, dict[str, tuple[str, str]]] = {
    SNAPSHOTTER[0]: {SNAPSHOT_CLIENT[0]: SNAPSHOT_CLIENT},
}
DRIVER_SOURCES = Path(__file__).resolve().parent / "csidriver"


@dataclass(frozen=True)
class CsiBinaries:
    """Paths of the CSI binaries the local cluster runs (and the sanity suite the tests run)."""

    provisioner: Path
    snapshot_controller: Path
    snapshotter: Path
    resizer: Path
    driver: Path
    sanity: Path


def _download(module: str, version: str, work: Path) -> Path:
    """The module's directory in the Go module cache (downloaded if needed)."""
    cached = Path(_go_env(work)["GOMODCACHE"]) / f"{module}@{version}"  # our module paths need no case escaping
    if (cached / "go.mod").exists():
        return cached
    work.mkdir(parents=True, exist_ok=True)
    out = _run(["go", "mod", "download", "-json", f"{module}@{version}"], work, _go_env(work))
    return Path(json.loads(out)["Dir"])


def _writable_copy(source: Path, target: Path) -> None:
    """Copy a (read-only) module cache directory so that Go may update go.sum in it."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    for path in [target, *target.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def build_upstream(module: str, version: str, packages: list[str], out_dir: Path) -> None:
    """Build ``packages`` of ``module@version`` with the module's own go.mod into ``out_dir``."""
    work = cache_root() / "build" / f"{module.replace('/', '_')}@{version}"
    src = work / "src"
    _writable_copy(_download(module, version, work), src)
    env = _go_env(src)
    for old, (new, new_version) in LOCAL_REPLACES.get(module, {}).items():
        _run(["go", "mod", "edit", f"-replace={old}={new}@{new_version}"], src, env)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _run(["go", "build", "-trimpath", "-ldflags", f"-s -w -X main.version={version}", "-o", f"{tmp}/", *packages],
         src, env)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)


def _driver_sources() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(DRIVER_SOURCES.iterdir()) if p.name.endswith((".go", "go.mod", "go.sum"))}


def driver_path() -> Path:
    """Where the driver built from the current sources lives (keyed by a hash of them)."""
    digest = hashlib.sha256()
    for name, data in sorted(_driver_sources().items()):
        digest.update(name.encode() + b"\0" + data + b"\0")
    return cache_root() / "bin" / f"csi-driver-{digest.hexdigest()[:16]}" / "k8sso-csi-driver"


def build_driver(out: Path) -> None:
    """Build our CSI driver from the source files kept in this package."""
    work = cache_root() / "build" / "csi-driver"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name, data in _driver_sources().items():
        (work / name).write_bytes(data)
    env = _go_env(work)
    env["GOFLAGS"] = "-mod=readonly -buildvcs=false"  # go.sum in the repository pins every dependency
    tmp = out.with_suffix(".tmp")
    _run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(tmp), "."], work, env)
    tmp.rename(out)


def _need_go() -> None:
    if shutil.which("go") is None:
        raise RuntimeError("Go is needed to build the local cluster's CSI binaries (scripts/setup.sh installs it)")


def ensure_csi() -> CsiBinaries:
    """Return the cached CSI binaries, building what is missing."""
    groups: dict[tuple[str, str], list[str]] = {}
    for name, (module, version, _pkg) in UPSTREAM.items():
        groups.setdefault((module, version), []).append(name)
    paths: dict[str, Path] = {}
    for (module, version), names in groups.items():
        out_dir = cache_root() / "bin" / f"{module.split('/')[2]}-{version}"
        if not all((out_dir / n).exists() for n in names):
            _need_go()
            pkgs = [UPSTREAM[n][2] for n in names]
            timed(f"{', '.join(names)} {version}", functools.partial(build_upstream, module, version, pkgs, out_dir))
        paths.update({n: out_dir / n for n in names})
    driver = driver_path()
    if not driver.exists():
        _need_go()
        driver.parent.mkdir(parents=True, exist_ok=True)
        timed("k8sso-csi-driver", lambda: build_driver(driver))
    return CsiBinaries(
        provisioner=paths["csi-provisioner"],
        snapshot_controller=paths["snapshot-controller"],
        snapshotter=paths["csi-snapshotter"],
        resizer=paths["csi-resizer"],
        driver=driver,
        sanity=paths["csi-sanity"],
    )


def snapshot_crds() -> list[Path]:
    """The CRDs of the pinned client module's ``config/crd`` (its kustomization's list): VolumeSnapshot,
    VolumeSnapshotContent, VolumeSnapshotClass and their VolumeGroupSnapshot counterparts (without the
    latter the snapshot controller waits 30 s at start for them, then runs without the feature)."""
    module, version = SNAPSHOT_CLIENT
    crd_dir = _download(module, version, cache_root() / "build" / "snapshot-client") / "config" / "crd"
    kustomization = yaml.safe_load((crd_dir / "kustomization.yaml").read_text())
    return [crd_dir / name for name in kustomization["resources"]]


# The upstream RBAC of each controller, from its pinned module (module, version, path in the module).
RBAC = (
    (*PROVISIONER, "deploy/kubernetes/rbac.yaml"),
    (*SNAPSHOTTER, "deploy/kubernetes/csi-snapshotter/rbac-csi-snapshotter.yaml"),
    (*SNAPSHOTTER, "deploy/kubernetes/snapshot-controller/rbac-snapshot-controller.yaml"),
    (*RESIZER, "deploy/kubernetes/rbac.yaml"),
)


def rbac_manifests() -> list[Path]:
    """The upstream RBAC manifests of the sidecars and the snapshot controller, at the pinned versions."""
    return [_download(m, v, cache_root() / "build" / "rbac") / path for m, v, path in RBAC]


if __name__ == "__main__":
    for field_name, path in vars(ensure_csi()).items():
        print(f"{field_name}: {path}")
    for crd in snapshot_crds():
        print(crd)

"""Container images for the local cluster, built here and pushed to its local registry.

Three images, each cached by a hash of its inputs (the registry's storage lives under the cache):

- ``pause``: the sandbox image, a static C program that sleeps until SIGTERM/SIGINT;
- ``busybox``: Debian's ``busybox-static`` with its applets linked, for small test pods;
- ``step``: a Debian bookworm root file system (``mmdebstrap``) with Python, a virtualenv holding
  the exact versions of zenml and its dependencies installed in this checkout's environment, and
  this project in a second layer, so that a code change rebuilds only that layer.

Layers are uncompressed tar files (OCI ``layer.v1.tar``), written deterministically
(sorted entries, fixed mtimes, owner root), so the same inputs give the same digests.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .build import cache_root

REGISTRY_HOST = "registry.k8sso.local"  # resolved by the nodes' containerd to the cluster's own registry
RECIPE_VERSION = "2"  # bump to rebuild every image
SOURCE_DATE_EPOCH = 1735689600  # 2025-01-01: the mtime of every file we write into a layer
DEBIAN_SUITE = "bookworm"
STEP_PACKAGES = ("python3", "python3-venv", "ca-certificates", "procps", "iproute2")
VENV = "/opt/venv"

PAUSE_C = r"""
/* The sandbox's first process: holds the pod's namespaces until told to stop. */
#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
"""

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"


def image_cache() -> Path:
    return cache_root() / "images"


def registry_storage() -> Path:
    """The local registry's storage (shared by every local cluster's registry process)."""
    return cache_root() / "registry"


def ref(repository: str, tag: str) -> str:
    return f"{REGISTRY_HOST}/k8sso/{repository}:{tag}"


def _current_file() -> Path:
    return image_cache() / "current.json"


def current(name: str) -> str:
    """The content-tagged reference of the last pushed ``name`` image (a tag that is not ``latest``, so
    the kubelet's default pull policy is IfNotPresent and a node pulls it once)."""
    try:
        return json.loads(_current_file().read_text())[name]
    except (OSError, KeyError, ValueError):
        raise RuntimeError(f"no {name} image built yet: run scripts/setup.sh "
                           "(python -m k8sso_localcluster.registry)") from None


def record_current(references: dict[str, str]) -> None:
    tmp = _current_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(references, indent=1, sort_keys=True))
    tmp.replace(_current_file())


@dataclass(frozen=True)
class Image:
    """A built image: its layers (tar files) and config, ready to push."""

    repository: str
    tags: tuple[str, ...]
    layers: tuple[Path, ...]
    config: dict = field(default_factory=dict)

    @property
    def reference(self) -> str:
        return ref(self.repository, self.tags[0])


def _digest_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _hash(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


# ------------------------------------------------------------------ layers
def _tarinfo(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, SOURCE_DATE_EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def write_layer(out: Path, entries: Iterable[tuple[str, bytes | None, int]], links: dict[str, str] | None = None) -> Path:
    """A deterministic layer tar: ``entries`` are (path, content or None for a directory, mode)."""
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, content, mode in sorted(entries, key=lambda e: e[0]):
            if content is None:
                tar.addfile(_tarinfo(name, tarfile.DIRTYPE, mode))
            else:
                tar.addfile(_tarinfo(name, mode=mode, size=len(content)), io.BytesIO(content))
        for name, target in sorted((links or {}).items()):
            info = _tarinfo(name, tarfile.SYMTYPE, 0o777)
            info.linkname = target
            tar.addfile(info)
    tmp.rename(out)
    return out


def _dirs_of(paths: Iterable[str]) -> set[str]:
    dirs: set[str] = set()
    for p in paths:
        parts = p.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return dirs


def _with_dirs(files: dict[str, tuple[bytes, int]]) -> list[tuple[str, bytes | None, int]]:
    entries: list[tuple[str, bytes | None, int]] = [(d, None, 0o755) for d in _dirs_of(files)]
    entries += [(name, data, mode) for name, (data, mode) in files.items()]
    return entries


# ------------------------------------------------------------------ images
def _config(entrypoint: list[str] | None, cmd: list[str] | None, env: list[str], workdir: str, layers: tuple[Path, ...]) -> dict:
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": "2025-01-01T00:00:00Z",
        "config": {
            **({"Entrypoint": entrypoint} if entrypoint else {}),
            **({"Cmd": cmd} if cmd else {}),
            "Env": env,
            "WorkingDir": workdir,
        },
        "rootfs": {"type": "layers", "diff_ids": [_digest_file(p) for p in layers]},
    }


def build_pause() -> Image:
    """A static ``pause`` binary as a one-file image (gcc -static)."""
    key = _hash(RECIPE_VERSION, PAUSE_C, _run(["gcc", "--version"]).stdout)
    d = image_cache() / "pause" / key
    layer = d / "layer.tar"
    if not layer.exists():
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            src, binary = Path(tmp) / "pause.c", Path(tmp) / "pause"
            src.write_text(PAUSE_C)
            _run(["gcc", "-static", "-O2", "-s", "-o", str(binary), str(src)])
            write_layer(layer, _with_dirs({"pause": (binary.read_bytes(), 0o755)}))
    layers = (layer,)
    return Image("pause", (key, "latest"), layers, _config(["/pause"], None, [], "/", layers))


def _deb_version(package: str) -> str:
    out = _run(["apt-cache", "policy", package]).stdout
    for line in out.splitlines():
        if line.strip().startswith("Candidate:"):
            return line.split(":", 1)[1].strip()
    raise RuntimeError(f"apt-cache knows no candidate for {package}")


def build_busybox() -> Image:
    """Debian's busybox-static, with a symlink per applet in /bin."""
    version = _deb_version("busybox-static")
    key = _hash(RECIPE_VERSION, "busybox-static", version)
    d = image_cache() / "busybox" / key
    layer = d / "layer.tar"
    if not layer.exists():
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            _run(["apt-get", "download", f"busybox-static={version}"], cwd=tmp)
            deb = next(Path(tmp).glob("busybox-static_*.deb"))
            _run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "root")])
            binary = (Path(tmp) / "root" / "bin" / "busybox").read_bytes()
            applets = _run([str(Path(tmp) / "root" / "bin" / "busybox"), "--list"]).stdout.split()
        files = {"bin/busybox": (binary, 0o755), "etc/passwd": (b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n", 0o644),
                 "etc/group": (b"root:x:0:\nnobody:x:65534:\n", 0o644)}
        entries = _with_dirs(files) + [("tmp", None, 0o1777), ("root", None, 0o700)]
        links = {f"bin/{a}": "busybox" for a in applets if a != "busybox"}
        write_layer(layer, entries, links)
    layers = (layer,)
    env = ["PATH=/bin"]
    tag = version.split(":", 1)[-1].replace("+", "_")  # a tag cannot hold the epoch's ':' or a '+'
    return Image("busybox", (tag, "latest"), layers, _config(None, ["sh"], env, "/", layers))


# this project (copied in as source), the packaging tools, and the linters CI runs outside pods
_NOT_IN_IMAGE = ("k8s-step-operator", "k8s_step_operator", "k8sso-localcluster", "k8sso_localcluster", "pip==",
                 "setuptools==", "wheel==", "ruff==", "mypy==", "mypy-extensions==", "mypy_extensions==",
                 "types-PyYAML==", "librt==", "pathspec==")


def _frozen_requirements() -> str:
    """This environment's exact packages (this project excluded): what the step image installs."""
    out = _run([sys.executable, "-m", "pip", "freeze", "--exclude-editable", "--all"]).stdout
    keep = [line for line in out.splitlines()
            if line and not line.startswith(_NOT_IN_IMAGE)]
    return "\n".join(sorted(keep, key=str.lower)) + "\n"


def _project_root() -> Path:
    return Path(__file__).resolve().parents[3]


def _project_files() -> dict[str, tuple[bytes, int]]:
    src = _project_root() / "src"
    files: dict[str, tuple[bytes, int]] = {}
    for path in sorted((src / "k8s_step_operator").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files["opt/k8sso/src/" + str(path.relative_to(src))] = (path.read_bytes(), 0o644)
    files[f"{VENV.lstrip('/')}/lib/python3.11/site-packages/k8s_step_operator.pth"] = (b"/opt/k8sso/src\n", 0o644)
    return files


def _normalise(distribution: str) -> str:
    """A distribution's name as wheel file names spell it (``zenml``, ``typing_extensions``)."""
    return distribution.lower().replace("-", "_").replace(".", "_")


def _build_step_base(out: Path, requirements: str) -> None:
    """mmdebstrap a Debian root file system with Python and a virtualenv of ``requirements``."""
    with tempfile.TemporaryDirectory(prefix="k8sso-step-") as tmp:
        wheels = Path(tmp) / "wheels"
        reqs = Path(tmp) / "requirements.txt"
        reqs.write_text(requirements)
        wheelhouse = image_cache() / "wheels"  # pip's wheels, reused across builds
        wheelhouse.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-r", str(reqs), "-w", str(wheelhouse)])
        wheels.mkdir()
        pinned = dict(line.split("==", 1) for line in requirements.splitlines() if "==" in line)
        versions = {_normalise(name): version for name, version in pinned.items()}
        for whl in wheelhouse.glob("*.whl"):
            dist, version = whl.name.split("-")[:2]
            if versions.get(_normalise(dist)) == version:
                shutil.copy2(whl, wheels / whl.name)
        shutil.copy2(reqs, wheels / "requirements.txt")
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
        _run([
            "mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar",
            f"--include={','.join(STEP_PACKAGES)}",
            "--customize-hook=mkdir -p \"$1/app\" \"$1/tmp/wheels\" && chmod 1777 \"$1/app\"",  # any uid may unpack code in the WORKDIR
            f"--customize-hook=copy-in {wheels}/. /tmp/wheels",
            f"--customize-hook=chroot \"$1\" python3 -m venv {VENV}",
            f"--customize-hook=chroot \"$1\" env SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH} {VENV}/bin/pip install -q "
            "--no-index --no-deps --find-links /tmp/wheels -r /tmp/wheels/requirements.txt",
            "--customize-hook=rm -rf \"$1/tmp/wheels\" \"$1/root/.cache\"",
            DEBIAN_SUITE, str(out),
        ], env=env)


def build_step() -> Image:
    """The step image: Debian + Python + zenml (this environment's versions) + this project."""
    requirements = _frozen_requirements()
    base_key = _hash(RECIPE_VERSION, DEBIAN_SUITE, ",".join(STEP_PACKAGES), requirements)
    base = image_cache() / "step-base" / base_key / "layer.tar"
    if not base.exists():
        base.parent.mkdir(parents=True, exist_ok=True)
        tmp = base.with_suffix(".tmp.tar")
        _build_step_base(tmp, requirements)
        tmp.rename(base)
    files = _project_files()
    project_key = _hash(base_key, *(f"{k}:{hashlib.sha256(v[0]).hexdigest()}" for k, v in sorted(files.items())))
    project = image_cache() / "step-project" / project_key / "layer.tar"
    if not project.exists():
        project.parent.mkdir(parents=True, exist_ok=True)
        write_layer(project, _with_dirs(files))
    for kept in (base.parent, project.parent):  # the cache holds the current layers only (0.5 GB each)
        for other in kept.parent.iterdir():
            if other != kept:
                shutil.rmtree(other, ignore_errors=True)
    layers = (base, project)
    env = [f"PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONUNBUFFERED=1"]
    return Image("step", (project_key, "latest"), layers, _config(None, ["python3"], env, "/app", layers))


BUILDERS: dict[str, Callable[[], Image]] = {"pause": build_pause, "busybox": build_busybox, "step": build_step}


if __name__ == "__main__":  # python -m k8sso_localcluster.images step  ->  its current reference
    print(current(sys.argv[1] if len(sys.argv) > 1 else "step"))

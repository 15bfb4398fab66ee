"""Build the upstream control-plane binaries from Go modules, cached by version.

``kube`` is one multi-call binary (kube-apiserver, kube-controller-manager,
kube-scheduler, chosen by its first argument) built from ``k8s.io/kubernetes``
through a wrapper module whose ``replace`` lines pin each staging module to the
matching ``v0.N.M`` release. ``etcd`` is built from its own wrapper module so
its dependency versions never move Kubernetes'.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.35.4"
ETCD_VERSION = "v3.6.16"
GO_VERSION_DIRECTIVE = "1.25.0"

MAIN_GO = """\
// Multi-call control-plane binary: kube <apiserver|controller-manager|scheduler> [flags].
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kube apiserver|controller-manager|scheduler [flags]")
		os.Exit(2)
	}
	var command *cobra.Command
	switch os.Args[1] {
	case "apiserver", "kube-apiserver":
		command = apiserver.NewAPIServerCommand()
	case "controller-manager", "kube-controller-manager":
		command = controllermanager.NewControllerManagerCommand()
	case "scheduler", "kube-scheduler":
		command = scheduler.NewSchedulerCommand()
	default:
		fmt.Fprintf(os.Stderr, "unknown component %q\\n", os.Args[1])
		os.Exit(2)
	}
	os.Args = append([]string{os.Args[1]}, os.Args[2:]...)
	command.SetArgs(os.Args[1:])
	os.Exit(cli.Run(command))
}
"""


@dataclass(frozen=True)
class Binaries:
    """Paths of the binaries the local control plane runs."""

    kube: Path
    etcd: Path

    def command(self, component: str) -> list[str]:
        """The argv prefix that starts ``component`` (apiserver, scheduler, ...)."""
        if component == "etcd":
            return [str(self.etcd)]
        # Separate binaries (KUBEBUILDER_ASSETS style) take precedence when present.
        single = self.kube.parent / f"kube-{component}"
        if single.exists() and single != self.kube:
            return [str(single)]
        return [str(self.kube), component]


def cache_root() -> Path:
    """Where builds, Go caches and binaries live (never inside the repository)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "k8s-step-operator"


def bin_dir(kube_version: str = KUBERNETES_VERSION, etcd_version: str = ETCD_VERSION) -> Path:
    return cache_root() / "bin" / f"k8s-{kube_version}_etcd-{etcd_version}"


def _go_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    root = cache_root()
    env.setdefault("GOMODCACHE", str(root / "go" / "mod"))
    env.setdefault("GOCACHE", str(root / "go" / "build"))
    env["CGO_ENABLED"] = "0"
    env["GOFLAGS"] = "-mod=mod -buildvcs=false"
    env["GOTOOLCHAIN"] = "local"
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    print(f"+ {' '.join(cmd)}  (in {cwd})", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def staging_modules(kube_version: str, work: Path, env: dict[str, str]) -> list[str]:
    """Read the staging module list from k8s.io/kubernetes' own go.mod on the proxy."""
    out = _run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{kube_version}"], work, env)
    mod_file = Path(json.loads(out)["GoMod"])
    return re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", mod_file.read_text(), re.M)


def _write_module(path: Path, name: str, requires: dict[str, str], replaces: dict[str, str]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    lines = [f"module {name}", "", f"go {GO_VERSION_DIRECTIVE}", "", "require ("]
    lines += [f"\t{mod} {ver}" for mod, ver in requires.items()]
    lines.append(")")
    if replaces:
        lines += ["", "replace ("]
        lines += [f"\t{mod} => {mod} {ver}" for mod, ver in replaces.items()]
        lines.append(")")
    (path / "go.mod").write_text("\n".join(lines) + "\n")


def _version_ldflags(kube_version: str) -> str:
    major, minor = kube_version.lstrip("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={kube_version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return " ".join(["-s", "-w", *flags])


def build_kube(kube_version: str, out: Path) -> None:
    work = cache_root() / "build" / f"kube-{kube_version}"
    env = _go_env(work)
    work.mkdir(parents=True, exist_ok=True)
    staging_version = "v0." + kube_version.lstrip("v").split(".", 1)[1]
    _write_module(work, "localcluster/kube", {"k8s.io/kubernetes": kube_version}, {})
    replaces = {mod: staging_version for mod in staging_modules(kube_version, work, env)}
    _write_module(work, "localcluster/kube", {"k8s.io/kubernetes": kube_version}, replaces)
    (work / "main.go").write_text(MAIN_GO)
    _run(["go", "mod", "tidy"], work, env)
    _run(["go", "build", "-trimpath", "-ldflags", _version_ldflags(kube_version), "-o", str(out), "."], work, env)


def build_etcd(etcd_version: str, out: Path) -> None:
    work = cache_root() / "build" / f"etcd-{etcd_version}"
    env = _go_env(work)
    _write_module(work, "localcluster/etcd", {"go.etcd.io/etcd/server/v3": etcd_version}, {})
    _run(["go", "get", f"go.etcd.io/etcd/server/v3@{etcd_version}"], work, env)
    _run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out), "go.etcd.io/etcd/server/v3"], work, env)


def prebuilt() -> Binaries | None:
    """Binaries named by K8S_STEP_OPERATOR_BINARIES or envtest's KUBEBUILDER_ASSETS."""
    for var in ("K8S_STEP_OPERATOR_BINARIES", "KUBEBUILDER_ASSETS"):
        value = os.environ.get(var)
        if not value:
            continue
        d = Path(value)
        kube = d / "kube" if (d / "kube").exists() else d / "kube-apiserver"
        if not (kube.exists() and (d / "etcd").exists()):
            raise FileNotFoundError(f"{var}={value} must hold etcd and kube (or kube-apiserver, ...)")
        return Binaries(kube=kube, etcd=d / "etcd")
    return None


def ensure_binaries(kube_version: str = KUBERNETES_VERSION, etcd_version: str = ETCD_VERSION) -> Binaries:
    """Return cached binaries, building what is missing (first build: tens of minutes)."""
    found = prebuilt()
    if found:
        return found
    target = bin_dir(kube_version, etcd_version)
    target.mkdir(parents=True, exist_ok=True)
    bins = Binaries(kube=target / "kube", etcd=target / "etcd")
    if shutil.which("go") is None and not (bins.kube.exists() and bins.etcd.exists()):
        raise RuntimeError("Go is needed to build the local control plane (or set K8S_STEP_OPERATOR_BINARIES)")
    for path, builder, version in ((bins.etcd, build_etcd, etcd_version), (bins.kube, build_kube, kube_version)):
        if path.exists():
            continue
        started = time.monotonic()
        tmp = path.with_suffix(".tmp")
        builder(version, tmp)
        tmp.rename(path)
        print(f"built {path.name} {version} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return bins


if __name__ == "__main__":
    b = ensure_binaries()
    print(b.kube)
    print(b.etcd)

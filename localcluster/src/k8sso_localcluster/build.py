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
COREDNS_VERSION = "v1.15.0"
GO_VERSION_DIRECTIVE = "1.25.0"
COREDNS_GO_DIRECTIVE = "1.26.0"  # CoreDNS v1.15 needs Go >= 1.26

# CoreDNS with only the plugins a cluster-local DNS needs, in plugin.cfg's order. No `forward`: names
# outside the cluster are not resolved, so no pod sends a DNS query off this machine.
COREDNS_PLUGINS = ("reload", "bind", "ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes")
COREDNS_MAIN_GO = """\
// CoreDNS with a fixed, small plugin set (see COREDNS_PLUGINS in build.py).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
%(imports)s
)

func init() {
	dnsserver.Directives = []string{%(directives)s}
}

func main() {
	coremain.Run()
}
"""

MAIN_GO = """\
// Multi-call binary: kube <apiserver|controller-manager|scheduler|kubelet> [flags].
package main

import (
	"context"
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
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kube apiserver|controller-manager|scheduler|kubelet [flags]")
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
	case "kubelet":
		command = kubelet.NewKubeletCommand(context.Background())
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
    coredns: Path | None = None

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
    # "-node": the multi-call binary carries the kubelet too (older caches do not).
    return cache_root() / "bin" / f"k8s-{kube_version}-node_etcd-{etcd_version}"


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


def _write_module(
    path: Path, name: str, requires: dict[str, str], replaces: dict[str, str], go: str = GO_VERSION_DIRECTIVE
) -> None:
    path.mkdir(parents=True, exist_ok=True)
    lines = [f"module {name}", "", f"go {go}", "", "require ("]
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


def build_coredns(coredns_version: str, out: Path) -> None:
    work = cache_root() / "build" / f"coredns-{coredns_version}"
    env = _go_env(work)
    _write_module(work, "localcluster/coredns", {"github.com/coredns/coredns": coredns_version}, {},
                  go=COREDNS_GO_DIRECTIVE)
    imports = "\n".join(f'\t_ "github.com/coredns/coredns/plugin/{p}"' for p in COREDNS_PLUGINS)
    directives = ", ".join(f'"{p}"' for p in COREDNS_PLUGINS)
    (work / "main.go").write_text(COREDNS_MAIN_GO % {"imports": imports, "directives": directives})
    _run(["go", "mod", "tidy"], work, env)
    _run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out), "."], work, env)


def coredns_path(coredns_version: str = COREDNS_VERSION) -> Path:
    return cache_root() / "bin" / f"coredns-{coredns_version}" / "coredns"


def ensure_coredns(coredns_version: str = COREDNS_VERSION) -> Path:
    """The cached CoreDNS binary, built on first use."""
    path = coredns_path(coredns_version)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _build_into(path, build_coredns, coredns_version)
    return path


def timed(what: str, action) -> None:
    """Run ``action`` and say how long building ``what`` took."""
    started = time.monotonic()
    action()
    print(f"built {what} in {time.monotonic() - started:.0f}s", file=sys.stderr)


def _build_into(path: Path, builder, version: str) -> None:
    def build() -> None:
        tmp = path.with_suffix(".tmp")
        builder(version, tmp)
        tmp.rename(path)

    timed(f"{path.name} {version}", build)


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
        return Binaries(kube=kube, etcd=d / "etcd", coredns=ensure_coredns())
    return None


def ensure_binaries(kube_version: str = KUBERNETES_VERSION, etcd_version: str = ETCD_VERSION) -> Binaries:
    """Return cached binaries, building what is missing (first build: tens of minutes)."""
    found = prebuilt()
    if found:
        return found
    target = bin_dir(kube_version, etcd_version)
    target.mkdir(parents=True, exist_ok=True)
    bins = Binaries(kube=target / "kube", etcd=target / "etcd", coredns=coredns_path())
    if shutil.which("go") is None and not all(p.exists() for p in (bins.kube, bins.etcd, coredns_path())):
        raise RuntimeError("Go is needed to build the local cluster (or set K8S_STEP_OPERATOR_BINARIES)")
    for path, builder, version in ((bins.etcd, build_etcd, etcd_version), (bins.kube, build_kube, kube_version)):
        if not path.exists():
            _build_into(path, builder, version)
    ensure_coredns()
    return bins


if __name__ == "__main__":
    b = ensure_binaries()
    print(b.kube)
    print(b.etcd)
    print(b.coredns)

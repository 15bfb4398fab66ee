#!/usr/bin/env bash
# Set up everything the tests and the demo need, idempotently:
# a virtualenv with the package and its test extras, the local cluster's binaries (control plane and kubelet,
# CoreDNS, the CSI sidecars and snapshot controller, our CSI driver, built from Go modules; containerd, runc, CNI plugins and the registry from Debian) and its images.
# Everything lands under ${XDG_CACHE_HOME:-$HOME/.cache}/k8s-step-operator, never in the repo.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/k8s-step-operator"
venv="${K8SSO_VENV:-$cache/venv}"
mkdir -p "$cache"

# Debian packages of the local cluster's nodes (see README, "The local cluster").
debs=(containerd runc containernetworking-plugins docker-registry mmdebstrap iptables iproute2 gcc libc6-dev mount)
missing=()
for deb in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q "install ok installed" || missing+=("$deb")
done
if [ "${#missing[@]}" -gt 0 ] || ! apt-cache policy busybox-static | grep -q 'Candidate: [0-9]'; then
  apt-get update -qq >&2
  [ "${#missing[@]}" -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
if ! command -v go >/dev/null && [ -z "${K8S_STEP_OPERATOR_BINARIES:-}${KUBEBUILDER_ASSETS:-}" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >&2  # stdout is the venv path
fi

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
stamp="$venv/.k8sso-installed"
# the product, and the local cluster (its own package in ./localcluster, never in the product's wheel)
installed_from="$("$venv/bin/python" -c 'import k8s_step_operator, k8sso_localcluster, pathlib; print(*(pathlib.Path(m.__file__).resolve().parents[1] for m in (k8s_step_operator, k8sso_localcluster)))' 2>/dev/null || true)"
if [ ! -f "$stamp" ] || [ "$repo/pyproject.toml" -nt "$stamp" ] || [ "$repo/localcluster/pyproject.toml" -nt "$stamp" ] \
   || [ "$installed_from" != "$repo/src $repo/localcluster/src" ]; then
  "$venv/bin/pip" install -q --upgrade pip >&2
  "$venv/bin/pip" install -q -e "$repo[test]" -e "$repo/localcluster" >&2
  "$venv/bin/python" -c "import k8s_step_operator, k8sso_localcluster" # fail loudly if the install did not work
  touch "$stamp"
fi

# Build (first time: about ten minutes) or reuse the binaries, then the images (pause, busybox, step).
"$venv/bin/python" -m k8sso_localcluster.build >/dev/null
"$venv/bin/python" -m k8sso_localcluster.build_csi >/dev/null  # CSI sidecars, csi-sanity, our driver
"$venv/bin/python" -m k8sso_localcluster.registry >/dev/null
echo "$venv"

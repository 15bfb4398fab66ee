#!/usr/bin/env bash
# Set up everything the tests and the demo need, idempotently:
# a virtualenv with the package and its test extras, and the local control-plane binaries.
# Everything lands under ${XDG_CACHE_HOME:-$HOME/.cache}/k8s-step-operator, never in the repo.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/k8s-step-operator"
venv="${K8SSO_VENV:-$cache/venv}"
mkdir -p "$cache"

if ! command -v unshare >/dev/null || ! command -v mount >/dev/null; then
  apt-get update -qq && apt-get install -y -qq util-linux mount
fi
if ! command -v go >/dev/null && [ -z "${K8S_STEP_OPERATOR_BINARIES:-}${KUBEBUILDER_ASSETS:-}" ]; then
  apt-get update -qq && apt-get install -y -qq golang-go
fi

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
stamp="$venv/.k8sso-installed"
installed_from="$("$venv/bin/python" -c 'import k8s_step_operator, pathlib; print(pathlib.Path(k8s_step_operator.__file__).resolve().parents[1])' 2>/dev/null || true)"
if [ ! -f "$stamp" ] || [ "$repo/pyproject.toml" -nt "$stamp" ] || [ "$installed_from" != "$repo/src" ]; then
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e "$repo[test]"
  "$venv/bin/python" -c "import k8s_step_operator" # fail loudly if the install did not work
  touch "$stamp"
fi

# Build (first time: tens of minutes) or reuse the control-plane binaries.
"$venv/bin/python" -m k8s_step_operator.localcluster.build >/dev/null
echo "$venv"

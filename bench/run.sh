#!/usr/bin/env bash
# The benchmark's one command: `bash bench/run.sh [--quick] [--only SECTIONS] ...` (see bench/run.py --help).
# Uses the project's venv (scripts/setup.sh makes it and the control-plane binaries).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${K8SSO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/k8s-step-operator/venv}"
if [ ! -x "$venv/bin/python" ]; then
  venv="$(bash "$repo/scripts/setup.sh")"
fi
cd "$repo"
exec "$venv/bin/python" bench/run.py "$@"

#!/usr/bin/env bash
# Run every test: unit tests and the integration tests against the local control plane.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$repo/scripts/setup.sh")"
cd "$repo"
exec "$venv/bin/python" -m pytest "$@"

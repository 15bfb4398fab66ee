#!/usr/bin/env bash
# Set up and run the demo: build or reuse the local control plane, start it, register the `k8s` flavor and a
# stack, and run examples/quickstart, whose training step runs in a Pod on the GPU-labelled node.
# The cluster is stopped at the end unless K8SSO_DEMO_KEEP=1.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/k8s-step-operator"
venv="$(bash "$repo/scripts/setup.sh")"
export PATH="$venv/bin:$PATH"
export K8SSO_IMAGE="${K8SSO_IMAGE:-$(python -m k8sso_localcluster.images step)}"  # content-tagged step image
demo="${K8SSO_DEMO_DIR:-$cache/demo}"
cluster="$demo/cluster"

echo "==> starting the local cluster (kube-apiserver, etcd, scheduler, controller-manager, 2 real nodes: kubelet + containerd)"
k8s-step-operator local-cluster up --root "$cluster"
if [ "${K8SSO_DEMO_KEEP:-0}" != "1" ]; then
  trap 'echo "==> stopping the local cluster"; k8s-step-operator local-cluster down --root "$cluster"' EXIT
fi
export KUBECONFIG="$cluster/kubeconfig"

echo "==> a fresh ZenML repository in $demo/workspace"
workspace="$demo/workspace"
rm -rf "$workspace" && mkdir -p "$workspace"
cp "$repo/examples/quickstart/run.py" "$workspace/run.py"
cd "$workspace"
export ZENML_CONFIG_PATH="$workspace/.zenconfig" ZENML_ANALYTICS_OPT_IN=false K8SSO_STEP_OPERATOR=k8s-local
zenml init >/dev/null
k8s-step-operator register --component k8s-local --namespace default --kubeconfig "$KUBECONFIG" --local --stack k8s-demo

echo "==> running the quickstart pipeline (the train step runs in a pod on node local-gpu)"
python run.py

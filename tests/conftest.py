"""Session-wide settings: the local cluster's fixtures, and the step image every test uses.

The content-tagged step image (not ``latest``) is exported for the subprocesses tests start (the zenml
CLI, the examples): with a content tag the kubelet pulls it once per node, not for every pod.
"""

import os

from k8sso_localcluster.images import current

pytest_plugins = ["k8sso_localcluster.pytest_plugin"]

for _var in ("K8SSO_TEST_IMAGE", "K8SSO_IMAGE", "K8SBENCH_IMAGE"):
    os.environ.setdefault(_var, current("step"))

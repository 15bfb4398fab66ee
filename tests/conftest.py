pytest_plugins = ["k8s_step_operator.localcluster.pytest_plugin"]

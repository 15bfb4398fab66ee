"""The shell that talks to the Kubernetes API: clients, retries, watches, logs."""

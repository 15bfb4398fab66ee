"""Pieces of the process node agent (``localcluster.node``): a small kubelet in Python.

Modules: ``agent`` (wiring, pod watch), ``nodestatus`` (Node, Lease, heartbeats),
``podworker`` (one pod's lifecycle), ``runtime`` and ``shim`` (containers as processes
in private mount/pid/uts namespaces), ``volumes``, ``objects`` and ``mountpoints``,
``envvars``, ``launchspec``, ``images`` and ``imagepull``, ``security`` (runAsUser,
runAsGroup, supplementalGroups, runAsNonRoot, fsGroup), ``status`` (pure status
computation), ``logs`` and ``logserver`` (the kubelet log endpoint), ``events``,
``cgroups``, ``timeutil``, ``quantity``, ``config``.

Not implemented (a real kubelet has them): probes (containers are ready once running),
exec/attach/port-forward, the rest of securityContext (capabilities, seccomp,
allowPrivilegeEscalation, readOnlyRootFilesystem; fsGroup on hostPath and claims),
CPU limits, disk emptyDir sizeLimit, service env vars other than ``kubernetes``,
image contents (containers run this machine's programs; the image only decides
whether a 'pull' succeeds).
"""

"""Benchmark of the ``k8s`` step operator against ZenML's built-in ``kubernetes`` step operator.

Entry point: ``python bench/run.py`` (see its ``--help``). Each measurement runs in
its own worker process (``python -m k8sbench.worker``) so that watches, threads and
memory of one operator never leak into the other's numbers.
"""

"""Real components for tests, the demo and benchmarks.

A distribution of its own (``testbed/pyproject.toml``, installed by ``make
setup``), so it is not in the operator's wheel or image: a kube-apiserver with
etcd, a one-node cluster, PostgreSQL, helm, the images. Nothing here is
imported by the operator.
"""

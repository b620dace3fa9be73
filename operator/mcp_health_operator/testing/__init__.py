"""Real components for tests, the demo and benchmarks.

Like ``kopf.testing``, this ships with the package so that the demo, the
benchmarks and the test suite start the same real parts: a kube-apiserver
with etcd, and PostgreSQL. Nothing here is imported by the operator itself.
"""

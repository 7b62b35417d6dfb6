"""Tier 3: a real Kubernetes control plane on loopback, with real nodes (kubelet, containerd, runc).

The harness that runs it lives in tests/support/k8s/, where the benchmarks import it too.
"""

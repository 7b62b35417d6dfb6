"""Tier 3: a real Kubernetes control plane on loopback, with real nodes (kubelet, containerd, runc).

A package (rather than loose modules) so the helpers are imported relatively and cannot clash with
other test folders' module names, whatever import mode pytest runs in.
"""

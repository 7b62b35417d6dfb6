"""Tier 3: a real Kubernetes control plane on loopback, with a test node agent playing the kubelet.

A package (rather than loose modules) so the helpers are imported relatively and cannot clash with
other test folders' module names, whatever import mode pytest runs in.
"""

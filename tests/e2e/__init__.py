"""Tier 4: end to end on kind, with the real images and the Helm chart (hack/kind-e2e.sh, docs/kind.md).

A package so its conftest and modules cannot clash with other test folders' module names.
"""

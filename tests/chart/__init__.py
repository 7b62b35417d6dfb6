"""The Helm chart (charts/mnist-operator) on its own: its CRD copy, ``helm lint`` and ``helm template``.
Installing it into a real cluster is tested in tests/k8s."""

"""The Helm chart (charts/mnist-operator) on its own: its CRD copy."""

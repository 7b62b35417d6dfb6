#!/usr/bin/env bash
# Regenerates the chart's copy of the MnistTraining CRD from the pydantic models (the same generator as
# manifests/crd.yaml). tests/chart/test_crd.py fails until this has been run after a model change.
#   bash hack/sync-chart-crd.sh            # uses .venv/bin/python, else python3
#   PYTHON=/path/to/python bash hack/sync-chart-crd.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
target=charts/mnist-operator/crds/mnisttrainings.yaml
# Write to a temporary file first: a failing generator must not leave a truncated CRD behind.
tmp="$(mktemp "${target}.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
"$PYTHON" -m mnist_api.crd >"$tmp"
chmod 644 "$tmp"  # mktemp makes it 0600; the chart is meant to be read by anyone
mv "$tmp" "$target"
trap - EXIT
echo "wrote $target"

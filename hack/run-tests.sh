#!/usr/bin/env bash
# Runs the whole suite with the project's venv. pytest's exit code 5 (no test collected) is a failure
# here: a suite that ran nothing proves nothing.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
# The real control-plane tier needs pinned Kubernetes binaries: built once (about 6 minutes on 2 cores),
# then cached in ~/.cache/mnist-operator; a warm check takes under a second.
if [ -z "${MNIST_K8S_BIN:-}" ]; then
  MNIST_K8S_BIN="$(bash hack/k8s-binaries.sh | tail -n 1)" || { echo "run-tests: hack/k8s-binaries.sh failed" >&2; exit 1; }
  export MNIST_K8S_BIN
fi
# The images the real test nodes run (trainer, operator, Pushgateway, pause): built once from the
# Dockerfiles, then cached by a hash of their inputs; a warm check takes under a second.
bash hack/build-images.sh >/dev/null || { echo "run-tests: hack/build-images.sh failed" >&2; exit 1; }
# Two workers: the real-cluster tests in one (tests/conftest.py groups them), everything else in the other.
.venv/bin/python -m pytest -n 2 --dist loadgroup "$@"
code=$?
if [ "$code" -eq 5 ]; then
  echo "run-tests: pytest collected no tests; failing" >&2
  exit 1
fi
exit "$code"

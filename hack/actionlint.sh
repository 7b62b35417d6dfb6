#!/usr/bin/env bash
# Lint the GitHub Actions workflows (.github/workflows/) with actionlint, built from its Go module at a
# pinned version through the Go module proxy (release downloads are not reachable here) and cached in
#   ${MNIST_OPERATOR_CACHE:-$HOME/.cache/mnist-operator}/bin/actionlint-<version>/actionlint
# actionlint also runs shellcheck on every `run:` script when shellcheck is on PATH (it is: `make lint`
# needs it for hack/*.sh).
#
# Usage: hack/actionlint.sh [actionlint arguments...]   (default: every workflow file)
set -euo pipefail

ACTIONLINT_VERSION=v1.7.12
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${MNIST_OPERATOR_CACHE:-$HOME/.cache/mnist-operator}"
BIN="${CACHE}/bin/actionlint-${ACTIONLINT_VERSION}"

if [[ "$("${BIN}/actionlint" --version 2>/dev/null | head -n 1)" != "${ACTIONLINT_VERSION}" ]]; then
  GO="$(command -v go || true)"
  [[ -n "${GO}" ]] || GO=/usr/local/go/bin/go
  [[ -x "${GO}" ]] || { echo "actionlint: no Go toolchain (looked in PATH and /usr/local/go/bin)" >&2; exit 1; }
  echo "actionlint: building ${ACTIONLINT_VERSION} into ${BIN}" >&2
  mkdir -p "${BIN}"
  # GOFLAGS=-mod=mod: build from the module's own go.mod, whatever the caller's environment says.
  GOFLAGS=-mod=mod GOBIN="${BIN}" "${GO}" install "github.com/rhysd/actionlint/cmd/actionlint@${ACTIONLINT_VERSION}"
fi

cd "${HERE}/.."
if [[ $# -eq 0 ]]; then
  set -- .github/workflows/*.yml
fi
exec "${BIN}/actionlint" -no-color "$@"

# Two commands do everything on a fresh Debian/Ubuntu machine:
#   make demo   set up, then train the sample manifest locally (no cluster needed)
#   make test   set up, then run every test tier
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_ARGS ?=

.PHONY: setup demo test lint format typecheck crd docs bench clean k8s-binaries images e2e

setup: $(VENV)/.installed
	@bash hack/install-system-deps.sh

$(VENV)/.installed: pyproject.toml
	@bash hack/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[trainer,operator,dev]'
	@touch $@

demo: setup
	$(VENV)/bin/mnist-operator local -f manifests/samples/mnist-training.yaml $(DEMO_ARGS)

test: setup
	bash hack/run-tests.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	shellcheck -x hack/*.sh .ci/run
	bash hack/actionlint.sh

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: setup
	$(VENV)/bin/mypy api/mnist_api trainer/mnist_trainer operator/mnist_operator

crd: setup
	$(PY) -m mnist_api.crd > manifests/crd.yaml
	PYTHON=$(PY) bash hack/sync-chart-crd.sh

docs: setup
	$(PY) -m mnist_api.reference > docs/spec-reference.md
	$(PY) -m mnist_operator.cli_reference > docs/cli.md

# Every benchmark, bench/[!_]*.py (bench/_*.py and bench/harness/ are helpers), run as a module from the
# repository root: `python -m bench.<name>`. Each prints ratios against a baseline measured in the same
# run and writes bench/results/<name>.json. The operator's scale points on the real control plane:
# `make bench BENCH_SCALE=10,100` (default 10,100,1000).
BENCH_SCALE ?=
bench: setup k8s-binaries
	@for script in bench/[!_]*.py; do \
		module="bench.$$(basename "$$script" .py)"; \
		echo "== python -m $$module"; MNIST_BENCH_SCALE=$(BENCH_SCALE) $(PY) -m "$$module" || exit 1; \
	done

k8s-binaries:
	bash hack/k8s-binaries.sh

# The trainer, operator, Pushgateway and pause images as OCI archives, built without Docker (BuildKit from
# the Go module proxy, a Debian stand-in for the python base; see hack/build-images.sh), cached in
# ~/.cache/mnist-operator/images/<hash of the inputs>/; then the tests that inspect and run them.
# With a Docker engine instead: docker build -f Dockerfile.trainer -t ghcr.io/mnist-operator/trainer:dev .
images:
	@bash hack/install-system-deps.sh
	bash hack/build-images.sh
	$(MAKE) setup
	CI=$${CI:-1} $(PY) -m pytest tests/images -m images

# The kind end-to-end test; fails (rather than skips) when Docker, kind or helm is missing.
e2e: setup
	MNIST_E2E_REQUIRED=1 $(VENV)/bin/python -m pytest tests/e2e -m e2e -rs

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache

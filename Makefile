# The two commands of the README: `make demo` (standalone, no cluster) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit tools controlplane cluster-up cluster-down bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/jwks-operator standalone --config examples/standalone.yaml --max-age 5

lint: $(STAMP)
	$(VENV)/bin/ruff check operator tests bench scripts
	$(VENV)/bin/ruff format --check operator tests bench scripts

typecheck: $(STAMP)
	$(VENV)/bin/mypy

tools: $(STAMP) controlplane
	bash scripts/ensure-tools.sh

# The real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kubectl)
# built once from its Go modules into ~/.cache/jwks-operator/ (see tests/controlplane/).
controlplane:
	bash tests/controlplane/build.sh

# Start it in the background (last line: KUBECONFIG=...), and stop it by its PIDs.
cluster-up: $(STAMP) controlplane
	$(PY) -m tests.controlplane.cluster up

cluster-down: $(STAMP)
	$(PY) -m tests.controlplane.cluster down

unit: $(STAMP)
	$(PY) -m pytest -q tests

test: lint typecheck tools
	$(PY) -m pytest -q -n 2 --dist loadgroup -p no:cacheprovider tests

bench: $(STAMP) tools
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache

# The two commands of the README: `make demo` (standalone, no cluster) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit tools controlplane cluster-up cluster-down bench lock clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# `make demo PORT=8081` when 8080 is taken: the demo then runs a copy of the example whose
# issuer names that port (.cache/demo/; edit the copy to see a reload). --max-age 5: the
# example's keys change every few seconds, so browsers and curl must not cache the JWKS
# longer than that (the server caps max-age at the next change anyway).
PORT ?= 8080
STATE_DIR ?= .jwks-state
DEMO_CONFIG := $(if $(filter 8080,$(PORT)),examples/standalone.yaml,.cache/demo/standalone-$(PORT).yaml)
demo: $(STAMP)
ifneq ($(PORT),8080)
	@mkdir -p .cache/demo
	sed 's|http://127.0.0.1:8080/|http://127.0.0.1:$(PORT)/|' examples/standalone.yaml > $(DEMO_CONFIG)
endif
	$(VENV)/bin/jwks-operator standalone --config $(DEMO_CONFIG) --port $(PORT) --state-dir $(STATE_DIR) --max-age 5 \
	  || { status=$$?; [ $$status -ne 2 ] || echo "make demo: if port $(PORT) is taken: make demo PORT=8081" >&2; exit $$status; }

# The image's dependencies, pinned with hashes (the Dockerfile installs exactly these).
# `make lock` re-resolves to the newest versions pyproject.toml allows; review the diff.
LOCK_VENV := .cache/piptools
lock:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet 'pip==25.0.1' 'pip-tools==7.6.2'
	$(LOCK_VENV)/bin/pip-compile --quiet --upgrade --generate-hashes --strip-extras --allow-unsafe \
	  --no-emit-index-url --no-emit-find-links --output-file requirements.lock pyproject.toml

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

# The real-cluster suite runs after the rest, in one process: it shares one control plane
# and runs in file order (the chart's uninstall test before the workloads log in).
test: lint typecheck tools
	$(PY) -m pytest -q -n 2 -p no:cacheprovider tests --ignore=tests/e2e_cluster
	$(PY) -m pytest -q -p no:cacheprovider tests/e2e_cluster

bench: $(STAMP) tools
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache

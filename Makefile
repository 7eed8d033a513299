# The two commands of the README: `make demo` (standalone, no cluster) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit tools bench lock clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# PORT=8081 when 8080 is taken: the example's issuer follows the port. --max-age 5: the
# example's keys change within a minute, so verifiers must not cache the JWKS for longer.
PORT ?= 8080
demo: $(STAMP)
	$(VENV)/bin/jwks-operator standalone --config examples/standalone.yaml --port $(PORT) --max-age 5

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

tools: $(STAMP)
	bash scripts/ensure-tools.sh

unit: $(STAMP)
	$(PY) -m pytest -q tests

test: lint typecheck tools
	$(PY) -m pytest -q -n 2 -p no:cacheprovider tests

bench: $(STAMP) tools
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache

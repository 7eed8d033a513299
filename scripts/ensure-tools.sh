#!/usr/bin/env bash
# Fetches the external tools the test suite drives for real (helm, nginx), so that a
# clean clone on a machine with only Python, pip, make and git runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"; [ -x "$PY" ] || PY=python3

# One line per tool.
"$PY" scripts/fetch_helm.py >/dev/null  # helm -> .cache/tools/bin/helm (chart lint/template tests)
command -v nginx >/dev/null || [ "$(id -u)" != 0 ] || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && { apt-get install -y -qq nginx-light || apt-get install -y -qq nginx; }; } >/dev/null 2>&1 || echo "ensure-tools: could not install nginx (tests that need it will skip)" >&2  # nginx (gateway test, server bench)
bash scripts/ensure-actionlint.sh >/dev/null  # actionlint -> ~/.cache/jwks-operator/actionlint-<version>/ (workflow lint test)
"$PY" -m tests.clients.build || echo "ensure-tools: a verifier or gateway of tests/clients did not build (the conformance suite names it)" >&2  # Go/Java/JS/Python verifiers, oauth2-proxy, Traefik -> ~/.cache/jwks-operator (first run: minutes)

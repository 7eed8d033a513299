#!/usr/bin/env bash
# Build actionlint (a Go module) once, into a versioned directory outside the clone, and
# print its path. tests/deploy/test_release.py runs it over .github/workflows/.
set -euo pipefail
ACTIONLINT_VERSION=v1.7.12
BIN_DIR="${JWKS_TOOLS_CACHE:-$HOME/.cache/jwks-operator}/actionlint-$ACTIONLINT_VERSION"
if [ ! -x "$BIN_DIR/actionlint" ]; then
  command -v go >/dev/null || { echo "ensure-actionlint: needs Go (https://go.dev/dl/) to build actionlint" >&2; exit 1; }
  mkdir -p "$BIN_DIR"
  GOBIN="$BIN_DIR" GOFLAGS=-mod=mod go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" >&2
fi
echo "$BIN_DIR/actionlint"

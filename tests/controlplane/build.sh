#!/usr/bin/env bash
# Build (once) the real Kubernetes control plane the cluster tests run against:
# kube-apiserver, kube-controller-manager and kubectl from the k8s.io/kubernetes Go module,
# and etcd from go.etcd.io/etcd/server/v3, through the Go module proxy.
#
# Why a wrapper module: k8s.io/kubernetes requires its staging modules (k8s.io/api,
# k8s.io/client-go, ...) at v0.0.0 and replaces them with ./staging paths that only
# exist in its git tree. A wrapper go.mod that requires k8s.io/kubernetes and replaces
# every staging module with its published v0.X.Y tag is what `go build` can resolve
# from the proxy alone. The replace list is read from k8s.io/kubernetes' own go.mod, so
# a version bump needs no hand edit. (Kubernetes' in-process test server would tie the
# tests to Go; real binaries are what users run and what kubectl and helm talk to.)
#
# Binaries land in $JWKS_TOOLS_CACHE (default ~/.cache/jwks-operator), keyed by
# version, outside the clone: a second clone (or a second `make test`) builds nothing.
# Prints the directory holding the binaries as its last line.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.35.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.5}"   # the etcd that k8s.io/kubernetes v1.35.4 requires
CACHE="${JWKS_TOOLS_CACHE:-$HOME/.cache/jwks-operator}"
OUT="$CACHE/controlplane-kube-$KUBE_VERSION-etcd-$ETCD_VERSION"
KUBE_BINARIES=(kube-apiserver kube-controller-manager kubectl)

complete() {
    for binary in "${KUBE_BINARIES[@]}" etcd; do [[ -x "$OUT/$binary" ]] || return 1; done
}
if complete; then echo "$OUT"; exit 0; fi

command -v go >/dev/null || { echo "build.sh: the Go toolchain (go) is needed to build the control plane" >&2; exit 2; }
mkdir -p "$CACHE" "$OUT"
exec 9>"$CACHE/.controlplane-build.lock"
flock 9  # two test runs never build into the same folder at once
if complete; then echo "$OUT"; exit 0; fi
echo "build.sh: building Kubernetes $KUBE_VERSION and etcd $ETCD_VERSION into $OUT (once)" >&2

WORK="$CACHE/build-kube-$KUBE_VERSION"
mkdir -p "$WORK/kube" "$WORK/etcd"
export GOFLAGS="-mod=mod"
export CGO_ENABLED=0
start=$(date +%s)

# One binary: built to a temporary name, then moved into place (never half a binary).
build() {  # build NAME PACKAGE LDFLAGS
    [[ -x "$OUT/$1" ]] && return 0
    go build -trimpath -ldflags "$3" -o "$OUT/.$1.tmp" "$2"
    mv "$OUT/.$1.tmp" "$OUT/$1"
}

# --- kube-apiserver, kube-controller-manager, kubectl --------------------------------
minor="${KUBE_VERSION#v1.}"   # 35.4
cd "$WORK/kube"
gomod_file="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
{
    echo "module jwks-operator.test/controlplane"
    echo
    sed -n 's/^go \(.*\)/go \1/p' "$gomod_file"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 v0.'"$minor"'#p' "$gomod_file"
    echo ")"
} > go.mod
cat > tools.go <<'GO'
//go:build tools

package controlplane

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
go mod tidy >/dev/null 2>&1 || go mod tidy
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*}"
ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=${minor%%.*}"
for binary in "${KUBE_BINARIES[@]}"; do
    build "$binary" "k8s.io/kubernetes/cmd/$binary" "$ldflags"
done

# --- etcd ---------------------------------------------------------------------------
cd "$WORK/etcd"
cat > go.mod <<GOMOD
module jwks-operator.test/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
cat > tools.go <<'GO'
//go:build tools

package etcd

import _ "go.etcd.io/etcd/server/v3"
GO
go mod tidy >/dev/null 2>&1 || go mod tidy
build etcd go.etcd.io/etcd/server/v3 "-s -w"

echo "built in $(( $(date +%s) - start )) s on $(date -u +%FT%TZ)" >> "$OUT/BUILD_INFO"
echo "build.sh: control plane built in $(( $(date +%s) - start )) s" >&2
echo "$OUT"

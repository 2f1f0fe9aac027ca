#!/usr/bin/env bash
# Builds the genuine kube-apiserver, kube-controller-manager (Kubernetes v1.37.2) and etcd
# (the version k8s.io/kubernetes v1.37.2 itself requires) from their Go modules, pinned by
# go/go.mod and go/go.sum beside this script, into a cache directory outside the repository.
# See README.md beside this file.
#
# Idempotent: when the cached binaries were built from the current go.mod/go.sum and report the
# right versions it exits at once. Resumable: modules and compiled packages are kept in the
# cache directory (GOMODCACHE, GOCACHE), so an interrupted build goes on where it stopped.
#
# Environment:
#   STAIRCASE_K8S_CACHE  cache directory (default: ~/.cache/staircase/k8s-v1.37.2)
#   STAIRCASE_K8S_NICE   niceness of the Go build (default: 19)
#   STAIRCASE_K8S_FORCE  set to 1 to rebuild even when the cached binaries work
set -euo pipefail

K8S_VERSION=v1.37.2
HERE="$(cd "$(dirname "$0")" && pwd)"
MODULE="${HERE}/go"
CACHE="${STAIRCASE_K8S_CACHE:-${HOME:-/root}/.cache/staircase/k8s-${K8S_VERSION}}"
BIN="${CACHE}/bin"
NICE="${STAIRCASE_K8S_NICE:-19}"

log() { printf '[real-apiserver] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The recipe's identity: the pinned module graph plus this script. A cache built from other
# pins or by another recipe is rebuilt.
recipe_id() { cat "${MODULE}/go.mod" "${MODULE}/go.sum" "${MODULE}/etcd/main.go" "$0" | sha256sum | cut -c1-16; }
RECIPE="$(recipe_id)"
RECIPE_FILE="${BIN}/.staircase-recipe"
ETCD_VERSION="$(sed -n 's|^require go.etcd.io/etcd/server/v3 \(v[0-9.]*\)$|\1|p' "${MODULE}/go.mod")"
[[ -n "${ETCD_VERSION}" ]] || die "no 'require go.etcd.io/etcd/server/v3 vX.Y.Z' line in ${MODULE}/go.mod"

cached_ok() {
    [[ -x "${BIN}/kube-apiserver" && -x "${BIN}/kube-controller-manager" && -x "${BIN}/etcd" ]] || return 1
    [[ "$(cat "${RECIPE_FILE}" 2>/dev/null)" == "${RECIPE}" ]] || return 1
    # Whole outputs are compared, not piped into `grep -q`: that closes the pipe at its first
    # match, and a writer killed by SIGPIPE fails the pipeline under pipefail.
    [[ "$("${BIN}/kube-apiserver" --version 2>/dev/null)" == "Kubernetes ${K8S_VERSION}" ]] || return 1
    [[ "$("${BIN}/kube-controller-manager" --version 2>/dev/null)" == "Kubernetes ${K8S_VERSION}" ]] || return 1
    [[ "$("${BIN}/etcd" --version 2>/dev/null)" == "etcd Version: ${ETCD_VERSION#v}"$'\n'* ]] || return 1
    command -v openssl >/dev/null 2>&1 || return 1
}

if [[ "${STAIRCASE_K8S_FORCE:-0}" != 1 ]] && cached_ok; then
    log "cached binaries in ${BIN} work (Kubernetes ${K8S_VERSION}, etcd ${ETCD_VERSION}); nothing to do"
    exit 0
fi

# The harness makes its certificates with the openssl CLI.
if ! command -v openssl >/dev/null 2>&1; then
    command -v apt-get >/dev/null || die "openssl is missing and there is no apt-get to install it"
    log "installing openssl"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl
fi

command -v go >/dev/null || die "needs Go (the module requires $(sed -n 's/^go //p' "${MODULE}/go.mod"))"
# Never let the go command fetch another toolchain: a too-old Go is an error, said plainly.
export GOTOOLCHAIN=local
export GOMODCACHE="${CACHE}/gomodcache"
export GOCACHE="${CACHE}/gocache"
export GOFLAGS="-mod=readonly -trimpath -buildvcs=false"
export CGO_ENABLED=0
go list -C "${MODULE}" -m >/dev/null 2>&1 ||
    die "$(go version) cannot load ${MODULE}/go.mod: $(go list -C "${MODULE}" -m 2>&1 | tail -1)"

START=$(date +%s)
log "building Kubernetes ${K8S_VERSION} and etcd ${ETCD_VERSION} into ${BIN} ($(go version), nice -n ${NICE})"
mkdir -p "${BIN}"

# 1. Modules (verified against go.sum). A module that cannot be resolved stops the build here
#    with the go command's own message naming it.
log "go mod download (GOMODCACHE=${GOMODCACHE})"
t0=$(date +%s)
(cd "${MODULE}" && go mod download) || die "go mod download failed (see the module named above)"
log "go mod download took $(( $(date +%s) - t0 ))s"

# 2. The binaries. Version variables as Kubernetes' own build sets them, else /version is empty.
BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
K8S_LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    K8S_LDFLAGS+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
    K8S_LDFLAGS+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=${BUILD_DATE}"
done

build() { # name package ldflags
    local t0
    t0=$(date +%s)
    log "go build ${2}"
    (cd "${MODULE}" && nice -n "${NICE}" go build -o "${BIN}/${1}.tmp" -ldflags "${3}" "${2}") ||
        die "go build ${2} failed"
    mv -f "${BIN}/${1}.tmp" "${BIN}/${1}"
    log "go build ${1} took $(( $(date +%s) - t0 ))s"
}
build etcd ./etcd "-s -w"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "${K8S_LDFLAGS}"
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "${K8S_LDFLAGS}"

echo "${RECIPE}" >"${RECIPE_FILE}"
cached_ok || die "the built binaries do not report Kubernetes ${K8S_VERSION} / etcd ${ETCD_VERSION}"
log "$("${BIN}/kube-apiserver" --version), $("${BIN}/etcd" --version | sed -n 1p)"
log "done in $(( $(date +%s) - START ))s: ${BIN}/{kube-apiserver,kube-controller-manager,etcd}; cache $(du -sh "${CACHE}" | cut -f1)"

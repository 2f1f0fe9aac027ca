#!/usr/bin/env bash
# Builds webapp-go, the controller-runtime peer of the webapp benchmark, from this module (pinned by
# go.mod and go.sum) with the module and build caches of scripts/real-apiserver/build.sh, so the
# k8s.io packages compiled there are reused. Prints the binary's path.
#
# Environment:
#   STAIRCASE_K8S_CACHE  cache directory (default: ~/.cache/staircase/k8s-v1.37.2)
#   STAIRCASE_K8S_NICE   niceness of the Go build (default: 19)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${STAIRCASE_K8S_CACHE:-${HOME:-/root}/.cache/staircase/k8s-v1.37.2}"
export GOTOOLCHAIN=local
export GOMODCACHE="${CACHE}/gomodcache"
export GOCACHE="${CACHE}/gocache"
export GOFLAGS="-mod=readonly -trimpath -buildvcs=false"
export CGO_ENABLED=0
OUT="${CACHE}/bin/webapp-go"
mkdir -p "${CACHE}/bin"
(cd "${HERE}" && nice -n "${STAIRCASE_K8S_NICE:-19}" go build -o "${OUT}" .)
echo "${OUT}"

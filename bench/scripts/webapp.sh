#!/usr/bin/env bash
# The whole webapp benchmark in one command: builds the release staircase-apiserver and the
# bench's binaries, builds (or reuses) the Go operator, then runs the driver once per N given
# (default 1000). Each run writes latest.md, latest.json and the SVG figures into
# bench/results/webapp-n<N>/.
#
# Usage: bench/scripts/webapp.sh [N...]
# Environment:
#   CARGO_TARGET_DIR      target directory (default: the workspace's target/)
#   WEBAPP_ARGS           more driver flags for every run, e.g. "--resync-s 10 --variants staircase"
#   STAIRCASE_K8S_CACHE   where webapp-go/build.sh builds (default: ~/.cache/staircase/k8s-v1.37.2)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "${ROOT}"
TARGET="${CARGO_TARGET_DIR:-${ROOT}/target}"
NS=("$@")
[ "${#NS[@]}" -gt 0 ] || NS=(1000)
for n in "${NS[@]}"; do
  [[ "${n}" =~ ^[0-9]+$ ]] || { echo "N must be a number, got ${n}" >&2; exit 2; }
done

echo "== building (release): staircase-apiserver, the bench's binaries" >&2
cargo build --release -p staircase-apiserver --features cli --bin staircase-apiserver
cargo build --release -p staircase-bench --bins
echo "== building the Go operator (cached after the first build)" >&2
GO_BIN="$(bash bench/webapp-go/build.sh)"

for n in "${NS[@]}"; do
  echo "== N = ${n}" >&2
  # shellcheck disable=SC2086 # WEBAPP_ARGS is a list of flags
  "${TARGET}/release/staircase-bench-webapp" --n "${n}" \
    --server-bin "${TARGET}/release/staircase-apiserver" --go-bin "${GO_BIN}" \
    ${WEBAPP_ARGS:-} >/dev/null
done

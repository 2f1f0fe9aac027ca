# Shared by the scripts that run a binary against the embedded API server. Source it from a
# script in scripts/: it sets `repo`, `target` (and exports CARGO_TARGET_DIR), a scratch `work`
# dir removed on exit with every process whose pid is added to `pids`, and defines
# `start_embedded_server`, which starts the server's binary and exports KUBECONFIG for it.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
export CARGO_TARGET_DIR=$target
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Starts the embedded API server's binary (built by the workspace's tests) and points KUBECONFIG
# at it once it listens.
start_embedded_server() {
  local kc=$work/kubeconfig
  "$target/debug/staircase-apiserver" --kubeconfig "$kc" >"$work/apiserver.log" 2>&1 &
  pids+=($!)
  # The server writes the kubeconfig once it listens.
  for _ in $(seq 1 600); do [ -s "$kc" ] && break; sleep 0.1; done
  [ -s "$kc" ] || { echo "the API server did not start:" >&2; cat "$work/apiserver.log" >&2; exit 1; }
  export KUBECONFIG=$kc
}

#!/usr/bin/env bash
# The example operator as a kubectl plugin, as docs/operating.md shows it: linked on the PATH as
# `kubectl-staircase`, `kubectl staircase explain` says what the next run of a paused Foo would do
# and changes nothing; removing the pause annotation lets the operator finish.
set -euo pipefail
source "$(dirname "$0")/lib/embedded-server.sh"

# The workspace's test build builds the examples and the API server binary (a no-op after
# `cargo test --workspace`).
cargo test --manifest-path "$repo/Cargo.toml" --workspace --no-run
mkdir -p "$work/bin"
ln -s "$target/debug/examples/foo-operator" "$work/bin/kubectl-staircase"
export PATH=$work/bin:$PATH

start_embedded_server
fail() {
  echo "$1" >&2
  echo "--- operator log" >&2
  cat "$work/operator.log" >&2 || true
  exit 1
}

kubectl-staircase crd | kubectl apply -f -
kubectl wait --for=condition=Established crd/foos.demo.staircase.rs --timeout=60s
kubectl apply -f - <<'EOF'
apiVersion: demo.staircase.rs/v1
kind: Foo
metadata:
  name: web
  namespace: default
  annotations:
    staircase.rs/pause-before: ensure_service
spec:
  message: hello
  port: 80
EOF
FOO_RECORD_DIR=$work/runs kubectl-staircase >"$work/operator.log" 2>&1 &
pids+=($!)
kubectl -n default wait --for=jsonpath='{.status.conditions[?(@.type=="Paused")].reason}'=ensure_service \
  foo/web --timeout=60s || fail "the Foo did not report its pause"
kubectl -n default wait --for=create secret/web-token --timeout=60s || fail "the steps before the pause did not run"

before=$(kubectl get foos,configmaps,secrets,services -n default -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.resourceVersion} {end}')
out=$(kubectl staircase explain foo/web -n default) || fail "kubectl staircase explain failed"
echo "$out"
after=$(kubectl get foos,configmaps,secrets,services -n default -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.resourceVersion} {end}')
[ "$before" = "$after" ] || fail "explain changed the cluster: $before -> $after"
grep -q "^next: ensure_service would make the run's one modification: created Service web-svc$" <<<"$out" ||
  fail "explain did not name the paused step's modification"
if kubectl -n default get service web-svc >/dev/null 2>&1; then fail "the paused step ran"; fi
set +e
kubectl staircase explain secrets/web -n default 2>"$work/err"
code=$?
set -e
[ "$code" = 1 ] && grep -q 'this operator explains foos.demo.staircase.rs (Foo), not "secrets"' "$work/err" ||
  fail "a wrong kind was not refused (exit $code): $(cat "$work/err")"

kubectl -n default annotate foo web staircase.rs/pause-before-
kubectl -n default wait --for=condition=Ready foo/web --timeout=60s || fail "the Foo did not resume"
kubectl -n default get service web-svc >/dev/null || fail "no Service after resuming"

# The run that created the Service, recorded, replays the same with the current code.
recording=$(grep -l '"detail": "created Service web-svc"' "$work"/runs/default_web/*.json | head -1 || true)
[ -n "$recording" ] || fail "no recording of the run that created the Service"
replayed=$(kubectl-staircase replay "$recording") || fail "the replay diverged or failed: $replayed"
echo "$replayed" | tail -1
grep -q "^the current code makes the same write" <<<"$replayed" || fail "unexpected replay: $replayed"
echo "kubectl staircase explain, the pause annotation and replay work as docs/operating.md shows"

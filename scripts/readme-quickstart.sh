#!/usr/bin/env bash
# Builds a new crate from the README alone — its Install block as the Cargo.toml, its Quickstart
# block as src/main.rs — and runs it against the embedded API server: the CRD gets installed, a
# Greeting gets its ConfigMap and a Ready condition. This is what a newcomer does first, so it
# must keep working as written.
set -euo pipefail
source "$(dirname "$0")/lib/embedded-server.sh"

# The first fenced block of a given language after a heading, without the fences.
block() { # heading language
  awk -v h="$1" -v lang="$2" '
    $0 == h { found = 1; next }
    found && !inside && index($0, "```" lang) == 1 { inside = 1; next }
    inside && $0 == "```" { exit }
    inside { print }
  ' "$repo/README.md"
}

# The README's path dependencies say `../staircase/…`: put the new crate beside a `staircase`
# that is this checkout.
ln -s "$repo" "$work/staircase"
app=$work/app
mkdir -p "$app/src"
{
  printf '[package]\nname = "readme-quickstart"\nversion = "0.0.0"\nedition = "2024"\npublish = false\n\n'
  printf '[workspace]\n\n'
  block "## Install" toml
} >"$app/Cargo.toml"
block "## Quickstart" rust >"$app/src/main.rs"
for f in "$app/Cargo.toml" "$app/src/main.rs"; do
  if [ "$(grep -c . "$f")" -lt 5 ]; then
    echo "could not extract $(basename "$f") from README.md" >&2
    exit 1
  fi
done
# Same dependency versions as the workspace, so the build reuses its artifacts.
cp "$repo/Cargo.lock" "$app/Cargo.lock"

echo "--- building the README's crate"
cargo build --manifest-path "$app/Cargo.toml"
echo "--- building the embedded API server's binary"
# As the workspace's tests build it (tests/Cargo.toml enables `cli`): after `cargo test
# --workspace` this is a no-op, where `cargo build -p staircase-apiserver` would rebuild its
# dependencies with other features.
cargo test --manifest-path "$repo/Cargo.toml" --workspace --no-run

start_embedded_server

RUST_LOG=info "$target/debug/readme-quickstart" >"$work/operator.log" 2>&1 &
pids+=($!)
fail() {
  echo "$1" >&2
  echo "--- operator log" >&2
  cat "$work/operator.log" >&2
  exit 1
}
kubectl wait --for=create crd/greetings.example.com --timeout=120s || fail "the quickstart did not install its CRD"
kubectl wait --for=condition=Established crd/greetings.example.com --timeout=60s
kubectl apply -f - <<'EOF'
apiVersion: example.com/v1
kind: Greeting
metadata:
  name: hello
  namespace: default
spec:
  message: hi from the README
EOF
kubectl -n default wait --for=create configmap/hello-greeting --timeout=60s ||
  fail "the quickstart did not create the ConfigMap"
kubectl -n default wait --for=jsonpath='{.data.message}'='hi from the README' configmap/hello-greeting --timeout=60s ||
  fail "the ConfigMap does not carry the message"
kubectl -n default wait --for=condition=Ready greeting/hello --timeout=60s ||
  fail "the Greeting did not become Ready"
kubectl -n default patch greeting hello --type=merge -p '{"spec":{"message":"changed"}}'
kubectl -n default wait --for=jsonpath='{.data.message}'=changed configmap/hello-greeting --timeout=60s ||
  fail "the ConfigMap did not follow the changed message"
echo "the README's quickstart, built as a new crate, ran against the embedded API server"

#!/usr/bin/env bash
# Regenerates, in staircase-apiserver/src/protobuf/:
# * kubernetes.binpb: the protobuf descriptor set of the Kubernetes API groups the embedded server
#   serves as built-in kinds, compiled from the `generated.proto` files of the Go modules below
#   (the versions scripts/real-apiserver/go pins);
# * json-fields.txt: where the JSON form of those types is not the plain mapping of their
#   protobuf fields, read from the Go types (scripts/protobuf-json-fields.py says what it holds).
#
# Needs `go` (for the module download), `python3` and `protoc` (Debian: apt-get install
# protobuf-compiler).
# The descriptor is committed, so building the crate needs neither.
set -euo pipefail

VERSION=v0.37.2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=$ROOT/staircase-apiserver/src/protobuf
OUT=$DIR/kubernetes.binpb

# The groups served built-in (staircase-apiserver/src/registry.rs) and autoscaling/v1 for /scale.
API=(core/v1 apps/v1 batch/v1 coordination/v1 events/v1 networking/v1 policy/v1 rbac/v1
  admissionregistration/v1 autoscaling/v1)

dir_of() {
  go mod download -json "$1@$VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# protoc resolves imports such as "k8s.io/api/core/v1/generated.proto" against one include root.
mkdir -p "$work/k8s.io"
ln -s "$(dir_of k8s.io/api)" "$work/k8s.io/api"
ln -s "$(dir_of k8s.io/apimachinery)" "$work/k8s.io/apimachinery"
ln -s "$(dir_of k8s.io/apiextensions-apiserver)" "$work/k8s.io/apiextensions-apiserver"

files=()
for g in "${API[@]}"; do files+=("k8s.io/api/$g/generated.proto"); done
files+=("k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1/generated.proto")

# --include_imports brings meta/v1, runtime, resource (Quantity) and intstr along; no source
# info, so the file stays small.
(cd "$work" && protoc -I . --include_imports --descriptor_set_out="$OUT" "${files[@]}") \
  2> >(grep -v 'is unused' >&2)

types=()
for g in "${API[@]}"; do types+=("k8s.io.api.${g//\//.}=$work/k8s.io/api/$g/types.go"); done
types+=("k8s.io.apimachinery.pkg.apis.meta.v1=$work/k8s.io/apimachinery/pkg/apis/meta/v1/types.go")
for f in "$work"/k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1/types*.go; do
  types+=("k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1=$f")
done
python3 "$ROOT/scripts/protobuf-json-fields.py" "${types[@]}" >"$DIR/json-fields.txt"
echo "wrote $OUT ($(wc -c <"$OUT") bytes) from k8s.io/api, k8s.io/apimachinery, k8s.io/apiextensions-apiserver $VERSION"

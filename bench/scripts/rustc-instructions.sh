#!/usr/bin/env bash
# Instructions rustc executes for one incremental rebuild of a figure-5 fixture after a trivial
# edit, counted by callgrind: unlike build times, the same from run to run (to within 0.1 %)
# whatever else the machine is doing.
#
#   bash bench/scripts/rustc-instructions.sh dsl20     # or hand20
#
# rustc runs under callgrind only for the fixture (`callgrind-rustc`, a RUSTC_WRAPPER); every
# other crate is compiled as usual. The wrapper is part of cargo's fingerprint, so the first run
# (and the first build without it afterwards) rebuilds the fixtures' dependencies. Uses
# $CARGO_TARGET_DIR (default: target).
set -euo pipefail
fixture=${1:?usage: rustc-instructions.sh dsl20|hand20}
cd "$(dirname "$0")/../.."
src=bench/fixtures/$fixture.rs
tmp=$(mktemp -d)
cp "$src" "$tmp/source"
trap 'cp "$tmp/source" "$src"; rm -rf "$tmp"' EXIT
build() {
  RUSTC_WRAPPER="$PWD/bench/scripts/callgrind-rustc" CARGO_INCREMENTAL=1 \
    STAIRCASE_CALLGRIND_CRATE="fixture_$fixture" STAIRCASE_CALLGRIND_OUT="$tmp/$1" \
    cargo build -q -p staircase-bench --example "fixture_$fixture"
}
build warm 2>/dev/null # the incremental cache of the unedited source
echo "// trivial edit" >>"$src"
build edited 2>"$tmp/log" || { cat "$tmp/log"; exit 1; }
awk -v f="$fixture" '/^summary:/ { printf "%s: %d instructions\n", f, $2 }' "$tmp/edited"

#!/usr/bin/env bash
# Instructions the operator thread executes per converged object (figure 3's L = 0 scenario:
# N objects, five patches each), counted by callgrind for one variant at a time. Wall-clock CPU
# per object swings by ±30 % between repetitions on a shared 2-core machine; instruction counts
# repeat, so a change to the runtime can be measured without that noise.
#
#   bash bench/scripts/operator-instructions.sh            # both variants, N = 100 and 300
#   N_SMALL=200 N_LARGE=600 bash bench/scripts/operator-instructions.sh staircase
#   STATUS=1 bash bench/scripts/operator-instructions.sh staircase   # with its status writes
#
# Per object = (instructions at N_LARGE − at N_SMALL) ÷ (N_LARGE − N_SMALL): a slope, so starting
# the runtime and building clients (the same at both sizes) drops out. The operator thread is
# callgrind's thread 3 (1: the harness, 2: the embedded server; each run's operator thread is
# spawned after the server's and ends before the next starts, and valgrind reuses its number).
# Needs a release build of the bench in $CARGO_TARGET_DIR (default: target).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${CARGO_TARGET_DIR:-target}/release/staircase-bench
[ -x "$bin" ] || { echo "build it first: cargo build --release -p staircase-bench" >&2; exit 1; }
small=${N_SMALL:-100}
large=${N_LARGE:-300}
variants=${*:-staircase hand}
status_flag=--no-status
[ "${STATUS:-0}" = 1 ] && status_flag=
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
count() { # variant n -> instructions of the operator thread
  STAIRCASE_BENCH_ONLY=converge STAIRCASE_BENCH_VARIANT=$1 STAIRCASE_BENCH_NO_PIN=1 \
    valgrind -q --tool=callgrind --separate-threads=yes --callgrind-out-file="$tmp/$1-$2" \
    "$bin" --n "$2" --reps 1 --no-compile $status_flag --out "$tmp/out-$1-$2" >"$tmp/log" 2>&1 \
    || { cat "$tmp/log" >&2; exit 1; }
  awk '/^summary:/ { print $2 }' "$tmp/$1-$2-03"
}
for v in $variants; do
  a=$(count "$v" "$small")
  b=$(count "$v" "$large")
  awk -v v="$v" -v a="$a" -v b="$b" -v s="$small" -v l="$large" \
    'BEGIN { printf "%s: %.0f instructions per object (%.0f at N=%d, %.0f at N=%d)\n", v, (b - a) / (l - s), a, s, b, l }'
done

#!/usr/bin/env bash
# Fuzzes the embedded API server (staircase-apiserver/fuzz): runs every cargo-fuzz target for a
# bounded time, one after the other, and fails on the first target that finds a crash (a panic,
# a hang, a 5xx answer to a request, an out-of-memory). Not part of .ci/run: CI time is limited.
#
# Usage: scripts/fuzz.sh [TARGET...]     (default: every target)
#
# Environment:
#   FUZZ_SECONDS     time per target (default 60)
#   FUZZ_SANITIZER   cargo fuzz's --sanitizer: address (default) or none (several times faster,
#                    enough for safe Rust: panics, hangs and wrong answers are caught either way)
#   CARGO_TARGET_DIR where to build (default staircase-apiserver/fuzz/target)
#
# Needs no nightly toolchain: RUSTC_BOOTSTRAP=1 lets the stable compiler accept the sanitizer
# flags cargo fuzz passes. Installs cargo-fuzz if it is missing. Inputs that crash are written to
# staircase-apiserver/fuzz/artifacts/<target>/; replay one with
#   (cd staircase-apiserver/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>)
# The corpus grows in staircase-apiserver/fuzz/corpus/<target>/ (only the seed-* files are
# committed).
set -euo pipefail
cd "$(dirname "$0")/../staircase-apiserver/fuzz"
seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build -s "$sanitizer"
for t in "${targets[@]}"; do
    printf '\n=== %s (%ss) ===\n' "$t" "$seconds"
    # -detect_leaks=0: leak checking costs most of the time and a leak is no bug here (the
    # harness keeps its server for the whole run). -timeout: an input taking longer is a hang.
    # One process (-jobs/-workers 1) logs to fuzz-0.log; it is printed and removed afterwards.
    rc=0
    cargo fuzz run -s "$sanitizer" "$t" -- \
        -max_total_time="$seconds" -jobs=1 -workers=1 \
        -detect_leaks=0 -timeout=10 -rss_limit_mb=3072 || rc=$?
    if [[ -f fuzz-0.log ]]; then
        grep -E '^(#[0-9]+ +DONE|Done [0-9]+ runs)|ERROR|panicked|SUMMARY|Test unit written' fuzz-0.log || true
        if [[ $rc -ne 0 ]]; then tail -n 60 fuzz-0.log; fi
        rm -f fuzz-0.log
    fi
    if [[ $rc -ne 0 ]]; then
        echo "fuzz target $t failed (exit $rc); the input is in artifacts/$t/" >&2
        exit "$rc"
    fi
done
echo "all fuzz targets ran ${seconds}s each without a crash"

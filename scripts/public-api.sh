#!/usr/bin/env bash
# Lists the public API of the `staircase` facade, one item per line (`kind path`), from the
# `all.html` index rustdoc writes. `.ci/run` compares it with the committed
# `staircase/public-api.txt`, so every change of the surface is seen and reviewed.
#
# Usage: scripts/public-api.sh [DOC_DIR]   (default: the target dir's doc/, after `cargo doc`)
#        scripts/public-api.sh --check     (fails when the committed list differs)
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
if [[ "${1:-}" == "--check" ]]; then check=1; shift; fi
doc="${1:-${CARGO_TARGET_DIR:-target}/doc}"
index="$doc/staircase/all.html"
[[ -f "$index" ]] || { echo "no $index: run cargo doc --workspace --no-deps first" >&2; exit 1; }
# Each item is a link `dir/kind.Name.html`; the prelude and the macros' `__private` module only
# re-export items listed elsewhere, and `guide` holds the user guide's chapters.
list=$(grep -o 'href="[^"#]*\.html"' "$index" |
    sed -e 's/^href="//' -e 's/"$//' |
    grep -v -e '^\.\./' -e '^prelude/' -e '^__private/' -e '^guide/' -e '^index\.html$' -e '^all\.html$' |
    sed -E 's#^(([a-z_0-9]+/)*)([a-z]+)\.([A-Za-z_0-9]+)\.html$#\3 staircase::\1\4#' |
    sed -e 's#/#::#g' | sort -u)
if [[ $check == 1 ]]; then
    if ! diff -u staircase/public-api.txt <(printf '%s\n' "$list"); then
        echo "the public API changed: review it, then run scripts/public-api.sh > staircase/public-api.txt" >&2
        exit 1
    fi
else
    printf '%s\n' "$list"
fi

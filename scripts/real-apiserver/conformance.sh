#!/usr/bin/env bash
# Runs the testkit's conformance cases (staircase-testkit/tests/conformance/cases.rs) unchanged
# against both servers -- the `conformance` target (embedded server) and the `conformance_real`
# target (real kube-apiserver v1.37.2 via staircase_testkit::real) -- and prints the agreement
# figure (cases with the same outcome on both / cases that reach the real server) with every
# disagreement. `cargo test --workspace` runs both targets too; this script only compares them.
#
# Usage: bash scripts/real-apiserver/conformance.sh [extra libtest args, e.g. a name filter]
# Exit status: 0 once both runs completed (the figure is a report); with
# STAIRCASE_CONFORMANCE_STRICT=1, 1 unless every counted case passes on both.
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf '[conformance] %s\n' "$*" >&2; }

bash scripts/real-apiserver/build.sh

WORK="$(mktemp -d)"
log "logs in ${WORK}"
cargo test -p staircase-testkit --features real --test conformance --test conformance_real --no-run -q

log "conformance against the embedded server"
cargo test -p staircase-testkit --features real --test conformance -- "$@" >"${WORK}/embedded.log" 2>&1 || true
log "conformance against the real kube-apiserver v1.37.2"
start=$(date +%s)
CI=true cargo test -p staircase-testkit --features real --test conformance_real -- "$@" >"${WORK}/real.log" 2>&1 || true
log "real-server run took $(( $(date +%s) - start ))s"

outcomes() { sed -n -E 's/^test ([A-Za-z0-9_:]+) \.\.\. (ok|FAILED|ignored)$/\1 \2/p' "$1" | sed 's/^cases:://' | sort; }
outcomes "${WORK}/embedded.log" >"${WORK}/embedded.txt"
outcomes "${WORK}/real.log" >"${WORK}/real.txt"

# Cases about the embedded server itself (fault injection, stats, shutdown, kubectl against it)
# return early on the real server (`if !embedded_backend() { return; }`): listed apart, not
# counted.
EMBEDDED_ONLY="$(awk '
    match($0, /^async fn [a-z0-9_]+/) { name = substr($0, 10, RLENGTH - 9) }
    /if !embedded_backend\(\)/ { print name }' staircase-testkit/tests/conformance/cases.rs | sort -u)"

total=0 agree=0 both_pass=0
disagreements=()
while read -r name emb; do
    real="$(awk -v n="${name}" '$1 == n { print $2 }' "${WORK}/real.txt")"
    if grep -qx "${name}" <<<"${EMBEDDED_ONLY}"; then
        log "  (embedded-only case, not counted) ${name}: embedded=${emb}"
        continue
    fi
    total=$((total + 1))
    if [[ "${emb}" == "${real}" ]]; then
        agree=$((agree + 1))
        [[ "${emb}" == ok ]] && both_pass=$((both_pass + 1))
    else
        disagreements+=("${name}: embedded=${emb} real=${real:-missing}")
    fi
done <"${WORK}/embedded.txt"

echo
echo "conformance: ${agree}/${total} cases agree (same outcome on both servers); ${both_pass}/${total} pass on both"
for d in "${disagreements[@]+"${disagreements[@]}"}"; do echo "  DISAGREE ${d}"; done
for f in embedded real; do
    failed="$(awk '$2 == "FAILED" { print $1 }' "${WORK}/${f}.txt" | tr '\n' ' ')"
    [[ -z "${failed}" ]] || echo "  failing on ${f}: ${failed}"
done
echo "full output: ${WORK}/embedded.log ${WORK}/real.log"
if [[ "${STAIRCASE_CONFORMANCE_STRICT:-0}" == 1 && ${both_pass} -ne ${total} ]]; then
    exit 1
fi

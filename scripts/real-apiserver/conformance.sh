#!/usr/bin/env bash
# Runs the testkit's conformance suite (staircase-testkit/tests/conformance.rs) unchanged against
# both servers -- the embedded one and the real kube-apiserver v1.20.2 -- and prints the agreement
# figure (cases with the same outcome on both / total) with every disagreement.
#
# The real server is started by the `serve` tool in staircase-testkit/tests/real_apiserver.rs
# (RealApiServer, stopped by pid when this script ends); the conformance suite reaches it through
# its existing STAIRCASE_CONFORMANCE_KUBECONFIG switch.
#
# Usage: bash scripts/real-apiserver/conformance.sh [extra libtest args, e.g. a name filter]
# Exit status: 0 once both runs completed (the figure is a report), 1 when the real server does not
# come up; with STAIRCASE_CONFORMANCE_STRICT=1 also 1 unless every counted case passes on both.
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf '[conformance] %s\n' "$*" >&2; }

bash scripts/real-apiserver/build.sh

WORK="$(mktemp -d)"
log "logs in ${WORK}"
cargo test -p staircase-testkit --test real_apiserver --test conformance --no-run -q

STAIRCASE_REAL_SERVE_DIR="${WORK}" cargo test -q -p staircase-testkit --test real_apiserver -- \
    --ignored --exact serve --nocapture >"${WORK}/serve.log" 2>&1 &
SERVE_PID=$!
stop_server() {
    touch "${WORK}/stop"
    wait "${SERVE_PID}" 2>/dev/null || true
}
trap stop_server EXIT

deadline=$(( $(date +%s) + ${STAIRCASE_REAL_START_TIMEOUT_SECS:-180} + 30 ))
while [[ ! -s "${WORK}/ready" ]]; do
    if ! kill -0 "${SERVE_PID}" 2>/dev/null || (( $(date +%s) > deadline )); then
        log "the real server did not come up:"
        cat "${WORK}/serve.log" >&2
        exit 1
    fi
    sleep 0.2
done
KUBECONFIG_PATH="$(cat "${WORK}/ready")"
log "real kube-apiserver up ($(grep -o 'ready in .*' "${WORK}/serve.log" || true)); kubeconfig ${KUBECONFIG_PATH}"

log "conformance against the embedded server"
cargo test -p staircase-testkit --test conformance -- "$@" >"${WORK}/embedded.log" 2>&1 || true
log "conformance against the real kube-apiserver v1.20.2"
STAIRCASE_CONFORMANCE_KUBECONFIG="${KUBECONFIG_PATH}" \
    cargo test -p staircase-testkit --test conformance -- "$@" >"${WORK}/real.log" 2>&1 || true

outcomes() { sed -n -E 's/^test ([A-Za-z0-9_:]+) \.\.\. (ok|FAILED|ignored)$/\1 \2/p' "$1" | sort; }
outcomes "${WORK}/embedded.log" >"${WORK}/embedded.txt"
outcomes "${WORK}/real.log" >"${WORK}/real.txt"

# Cases that never reach the real server -- they return early without the embedded one (fault
# injection, stats, kubectl against the fake, ...) or do not use `Target` at all -- pass vacuously
# there; they are listed apart and left out of the figure.
FAKE_ONLY="$(awk '
    function flush() { if (name != "" && (body ~ /t\.fake\(\) else \{ return/ || body !~ /Target::new\(\)/)) print name }
    /^#\[tokio::test/ { flush(); name = ""; body = ""; next }
    name == "" && match($0, /^async fn [a-z0-9_]+/) { name = substr($0, 10, RLENGTH - 9) }
    { body = body $0 "\n" }
    END { flush() }' staircase-testkit/tests/conformance.rs | sort -u)"

total=0 agree=0 both_pass=0
disagreements=()
while read -r name emb; do
    real="$(awk -v n="${name}" '$1 == n { print $2 }' "${WORK}/real.txt")"
    if grep -qx "${name}" <<<"${FAKE_ONLY}"; then
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
for d in "${disagreements[@]}"; do echo "  DISAGREE ${d}"; done
for f in embedded real; do
    failed="$(awk '$2 == "FAILED" { print $1 }' "${WORK}/${f}.txt" | tr '\n' ' ')"
    [[ -z "${failed}" ]] || echo "  failing on ${f}: ${failed}"
done
echo "full output: ${WORK}/embedded.log ${WORK}/real.log"
if [[ "${STAIRCASE_CONFORMANCE_STRICT:-0}" == 1 && ${both_pass} -ne ${total} ]]; then
    exit 1
fi

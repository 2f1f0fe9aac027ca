#!/usr/bin/env bash
# Builds the genuine kube-apiserver and kube-controller-manager v1.20.2 from Debian bookworm's
# `kubernetes` source package, and links Debian's etcd beside them, into a cache directory
# outside the repository. See README.md beside this file.
#
# Idempotent: when the cached binaries exist and report the right version it exits at once.
# Needs root (apt-get) and the Debian package archive; takes ~10 minutes on 2 cores the first time.
#
# Environment:
#   STAIRCASE_K8S_CACHE  cache directory (default: ~/.cache/staircase/k8s-v1.20.2)
#   STAIRCASE_K8S_NICE   niceness of the Go build (default: 19)
#   STAIRCASE_K8S_FORCE  set to 1 to rebuild even when the cached binaries work
set -euo pipefail

K8S_VERSION=v1.20.2
CACHE="${STAIRCASE_K8S_CACHE:-${HOME:-/root}/.cache/staircase/k8s-${K8S_VERSION}}"
BIN="${CACHE}/bin"
NICE="${STAIRCASE_K8S_NICE:-19}"
DEB_SRC_LIST=/etc/apt/sources.list.d/staircase-deb-src.sources
PACKAGES=(dpkg-dev golang-go etcd-server golang-github-modern-go-reflect2-dev openssl make rsync)

log() { printf '[real-apiserver] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# 0. Fast path: everything is already cached and works.
# ---------------------------------------------------------------------------------------------
# Bumped whenever the recipe changes what the binaries do (a cache built by an older recipe is
# rebuilt): 2 = go-openapi zero-value fix (step 3b).
BUILD_REV=2
BUILD_REV_FILE="${BIN}/.staircase-build-rev"
cached_ok() {
    [[ -x "${BIN}/kube-apiserver" && -x "${BIN}/kube-controller-manager" && -x "${BIN}/etcd" ]] || return 1
    [[ "$(cat "${BUILD_REV_FILE}" 2>/dev/null)" == "${BUILD_REV}" ]] || return 1
    "${BIN}/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes ${K8S_VERSION}" || return 1
    "${BIN}/kube-controller-manager" --version 2>/dev/null | grep -qx "Kubernetes ${K8S_VERSION}" || return 1
    "${BIN}/etcd" --version >/dev/null 2>&1 || return 1
    command -v openssl >/dev/null 2>&1 || return 1
}

if [[ "${STAIRCASE_K8S_FORCE:-0}" != 1 ]] && cached_ok; then
    log "cached binaries in ${BIN} work (Kubernetes ${K8S_VERSION}); nothing to do"
    exit 0
fi

[[ "$(id -u)" == 0 ]] || die "needs root for apt-get (run as root, or install: ${PACKAGES[*]})"
command -v apt-get >/dev/null || die "needs a Debian (bookworm) system with apt-get"

START=$(date +%s)
log "building Kubernetes ${K8S_VERSION} into ${CACHE}"
mkdir -p "${CACHE}" "${BIN}"

# ---------------------------------------------------------------------------------------------
# 1. deb-src entries, derived from the system's own (deb822) apt sources.
# ---------------------------------------------------------------------------------------------
derive_deb_src() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -e "$f" && "$f" != "${DEB_SRC_LIST}" ]] || continue
        awk 'BEGIN { RS = ""; FS = "\n" }
        {
            types = ""; out = ""; debian = 0; enabled = 1
            for (i = 1; i <= NF; i++) {
                line = $i
                if (line ~ /^[ \t]*#/) continue
                if (line ~ /^Types:/) { types = line; continue }
                if (line ~ /^Enabled:[ \t]*(no|false)/) enabled = 0
                if (line ~ /^URIs:/ && line ~ /debian/) debian = 1
                out = out line "\n"
            }
            if (enabled && debian && types ~ /(^|[ \t:])deb([ \t]|$)/ && types !~ /deb-src/)
                printf "Types: deb-src\n%s\n", out
        }' "$f"
    done
    # One-line style sources, if the system uses them.
    if [[ -f /etc/apt/sources.list ]]; then
        sed -n -E 's/^[[:space:]]*deb[[:space:]]+(.*debian.*)$/Types: deb-src\nX-Line: \1\n/p' /etc/apt/sources.list |
            awk 'BEGIN { RS = ""; FS = "\n" } {
                split($2, a, /[ \t]+/); opts = ""; n = 2
                if (a[2] ~ /^\[/) { while (a[n] !~ /\]$/) n++; n++ }
                uri = a[n]; suite = a[n + 1]; comps = ""
                for (j = n + 2; j in a; j++) comps = comps (comps == "" ? "" : " ") a[j]
                printf "Types: deb-src\nURIs: %s\nSuites: %s\nComponents: %s\n\n", uri, suite, comps
            }'
    fi
}

have_kubernetes_src() { apt-cache showsrc kubernetes 2>/dev/null | grep '^Package: kubernetes$' >/dev/null; }

NEED_UPDATE=0
if ! have_kubernetes_src; then
    if [[ ! -s "${DEB_SRC_LIST}" ]]; then
        derived="$(derive_deb_src)"
        [[ -n "${derived}" ]] || die "could not derive deb-src entries from /etc/apt/sources.list*"
        log "adding deb-src entries to ${DEB_SRC_LIST} (derived from the system's apt sources)"
        printf '# Written by staircase scripts/real-apiserver/build.sh\n%s\n' "${derived}" >"${DEB_SRC_LIST}"
    fi
    NEED_UPDATE=1
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] || NEED_UPDATE=1

if [[ ${NEED_UPDATE} == 1 ]]; then
    log "apt-get update"
    apt-get update -qq
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
have_kubernetes_src || die "apt cannot find the 'kubernetes' source package (check ${DEB_SRC_LIST})"

# ---------------------------------------------------------------------------------------------
# 2. The source package (complete upstream tree with vendor/), unpacked once.
# ---------------------------------------------------------------------------------------------
SRC_PARENT="${CACHE}/src"
mkdir -p "${SRC_PARENT}"
find_src() { find "${SRC_PARENT}" -maxdepth 2 -mindepth 2 -name Makefile -path '*/kubernetes-*/Makefile' -printf '%h\n' | sed -n 1p; }
SRC="$(find_src)"
if [[ -z "${SRC}" ]]; then
    log "apt-get source kubernetes (into ${SRC_PARENT})"
    (cd "${SRC_PARENT}" && apt-get source -qq kubernetes) || die "apt-get source kubernetes failed"
    SRC="$(find_src)"
    [[ -n "${SRC}" ]] || die "unpacked source not found under ${SRC_PARENT}"
fi
log "source tree: ${SRC}"

if [[ "${1:-}" == "--fetch-only" ]]; then
    log "--fetch-only: stopping after the fetch"
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# 3. reflect2: the vendored 1.0.1 faults under Go >= 1.18 (UnsafeMapType.UnsafeIterate) on the
#    first custom-resource create; use Debian's 1.0.2 instead.
# ---------------------------------------------------------------------------------------------
REFLECT2_DEB=/usr/share/gocode/src/github.com/modern-go/reflect2
REFLECT2_VENDOR="${SRC}/vendor/github.com/modern-go/reflect2"
if [[ ! -e "${REFLECT2_VENDOR}/.staircase-replaced" ]]; then
    [[ -f "${REFLECT2_DEB}/go_above_118.go" ]] || die "${REFLECT2_DEB} is not reflect2 >= 1.0.2"
    log "replacing vendored reflect2 1.0.1 with Debian's $(dpkg-query -W -f='${Version}' golang-github-modern-go-reflect2-dev)"
    rm -rf "${REFLECT2_VENDOR}"
    cp -rL "${REFLECT2_DEB}" "${REFLECT2_VENDOR}"
    rm -f "${REFLECT2_VENDOR}/go.mod"
    touch "${REFLECT2_VENDOR}/.staircase-replaced"
fi

# ---------------------------------------------------------------------------------------------
# 3b. go-openapi type validation: `data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)),
#    reflect.ValueOf(data))` compares two reflect.Value headers. Built with Go 1.15 (upstream
#    v1.20) they never match for a non-nil value; under Go >= 1.19 an empty string's header
#    equals the zero Value's, so every "" in a custom resource (spec or status) is rejected as
#    `Invalid value: "null": ... must be of type string`. Restore the upstream behaviour: only
#    a real null is null.
# ---------------------------------------------------------------------------------------------
for f in vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go vendor/github.com/go-openapi/validate/type.go; do
    if grep -q 'reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data))' "${SRC}/${f}"; then
        log "patching ${f}: zero-value check (empty strings are not null)"
        sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil { \/\/ staircase: see build.sh step 3b/' "${SRC}/${f}"
        grep -q 'staircase: see build.sh step 3b' "${SRC}/${f}" || die "patching ${f} failed"
    fi
done

# ---------------------------------------------------------------------------------------------
# 4. Go environment: GOPATH mode, the tree symlinked as $GOPATH/src/k8s.io/kubernetes.
# ---------------------------------------------------------------------------------------------
export GOPATH="${CACHE}/gopath"
export GOCACHE="${CACHE}/gocache"
export GO111MODULE=off
export CGO_ENABLED=0
export GOFLAGS=""
export PATH="/usr/lib/go/bin:${PATH}"
mkdir -p "${GOPATH}/src/k8s.io"
ln -sfn "${SRC}" "${GOPATH}/src/k8s.io/kubernetes"
log "$(go version) (GOPATH=${GOPATH}, GO111MODULE=off, CGO_ENABLED=0, nice -n ${NICE})"

# ---------------------------------------------------------------------------------------------
# 5. Generated OpenAPI definitions (else: undefined: openapi.GetOpenAPIDefinitions).
# ---------------------------------------------------------------------------------------------
if [[ ! -s "${SRC}/pkg/generated/openapi/zz_generated.openapi.go" ]]; then
    log "make gen_openapi (a few minutes)"
    t0=$(date +%s)
    (cd "${SRC}" && KUBE_GIT_VERSION="${K8S_VERSION}" nice -n "${NICE}" make gen_openapi) ||
        die "make gen_openapi failed"
    log "make gen_openapi took $(( $(date +%s) - t0 ))s"
fi

# ---------------------------------------------------------------------------------------------
# 6. The two binaries, with version information (else /version is empty).
# ---------------------------------------------------------------------------------------------
LDFLAGS="-s -w"
for pkg in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
    LDFLAGS+=" -X ${pkg}.gitVersion=${K8S_VERSION}"
    LDFLAGS+=" -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=20"
    LDFLAGS+=" -X ${pkg}.gitTreeState=clean"
    LDFLAGS+=" -X ${pkg}.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done
for cmd in kube-apiserver kube-controller-manager; do
    log "go build ${cmd}"
    t0=$(date +%s)
    (cd "${GOPATH}/src/k8s.io/kubernetes" &&
        nice -n "${NICE}" go build -o "${BIN}/${cmd}.tmp" -tags selinux,notest -ldflags "${LDFLAGS}" \
            "k8s.io/kubernetes/cmd/${cmd}") || die "go build ${cmd} failed"
    mv -f "${BIN}/${cmd}.tmp" "${BIN}/${cmd}"
    log "go build ${cmd} took $(( $(date +%s) - t0 ))s"
done

# ---------------------------------------------------------------------------------------------
# 7. etcd from Debian's etcd-server.
# ---------------------------------------------------------------------------------------------
ETCD="$(command -v etcd || true)"
[[ -n "${ETCD}" ]] || ETCD=/usr/bin/etcd
[[ -x "${ETCD}" ]] || die "etcd not found (package etcd-server)"
ln -sfn "${ETCD}" "${BIN}/etcd"

echo "${BUILD_REV}" >"${BUILD_REV_FILE}"
cached_ok || die "the built binaries do not report Kubernetes ${K8S_VERSION}"
log "$("${BIN}/kube-apiserver" --version), $("${BIN}/etcd" --version | sed -n 1p)"
log "done in $(( $(date +%s) - START ))s: ${BIN}/{kube-apiserver,kube-controller-manager,etcd}"

#!/usr/bin/env bash
# Provide pinned control-plane binaries for the tier-3 tests (tests/k8s/):
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, helm, and for the real
#   node: kubelet, kube-proxy and CoreDNS (cluster DNS); and Kueue, the queueing controller of the
#   Kueue tests
# built from source through the Go module proxy (the only source of Kubernetes code reachable here:
# release downloads are not). Results are cached outside the repo in
#   ${MNIST_OPERATOR_CACHE:-$HOME/.cache/mnist-operator}/bin/<kubernetes-version>/
# and a warm run only checks each binary's --version output.
#
# Usage: hack/k8s-binaries.sh [--check]
#   --check   do not build; exit 1 if the cache is incomplete (used by the test fixtures).
# The last line on stdout is the bin dir; all logging goes to stderr.
#
# Why one go build of k8s.io/kubernetes: the published module requires its staging modules
# (k8s.io/api, k8s.io/apiserver, ...) at v0.0.0 and only its own go.mod maps them to ./staging, which
# Go ignores for a dependency. We therefore generate a tiny main module that requires
# k8s.io/kubernetes@vX.Y.Z and replaces every staging module with its published twin v0.Y.Z, then build
# all four commands (plus etcd, whose version the same go.mod pins) in one invocation so the shared
# packages compile once.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/k8s-versions.env
source "${HERE}/k8s-versions.env"

CHECK_ONLY=0
case "${1:-}" in
  --check) CHECK_ONLY=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

CACHE="${MNIST_OPERATOR_CACHE:-$HOME/.cache/mnist-operator}"
BIN="${CACHE}/bin/${KUBERNETES_VERSION}"
K8S_MINOR="${KUBERNETES_VERSION#v1.}"; K8S_MINOR="${K8S_MINOR%%.*}"
STAGING_VERSION="v0.${KUBERNETES_VERSION#v1.}"   # v1.36.3 -> v0.36.3

log() { echo "k8s-binaries: $*" >&2; }

# Each binary with the command that prints its version and the text that output must contain.
# A binary that is present but reports another version (an older build, a half-written file) is rebuilt.
binary_ok() {
  local name="$1" want out
  [[ -x "${BIN}/${name}" ]] || return 1
  case "${name}" in
    kubectl) out="$("${BIN}/kubectl" version --client 2>&1)"; want="Client Version: ${KUBERNETES_VERSION}" ;;
    etcd) out="$("${BIN}/etcd" --version 2>&1)"; want="etcd Version: ${ETCD_VERSION#v}" ;;
    helm) out="$("${BIN}/helm" version --short 2>&1)"; want="${HELM_VERSION}" ;;
    coredns) out="$("${BIN}/coredns" -version 2>&1)"; want="CoreDNS-${COREDNS_VERSION#v}" ;;
    # Kueue prints no version; Go's build info names the module version it was built from.
    kueue)
      [[ -f "${BIN}/kueue-manifests/${KUEUE_VERSION}/webhook.yaml" ]] || return 1
      out="$(go_tool version -m "${BIN}/kueue" 2>&1)"; want=$'mod\tsigs.k8s.io/kueue\t'"${KUEUE_VERSION}" ;;
    *) out="$("${BIN}/${name}" --version 2>&1)"; want="Kubernetes ${KUBERNETES_VERSION}" ;;
  esac || return 1
  [[ "${out}" == *"${want}"* ]]
}

go_tool() {
  local go
  go="$(command -v go || echo /usr/local/go/bin/go)"
  "${go}" "$@"
}

K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy etcd)

missing() {
  local name
  for name in "${K8S_BINARIES[@]}" helm coredns kueue; do
    binary_ok "${name}" || echo "${name}"
  done
}

todo="$(missing)"
if [[ -z "${todo}" ]]; then
  log "cached: ${BIN}"
  echo "${BIN}"
  exit 0
fi
if [[ "${CHECK_ONLY}" == 1 ]]; then
  log "missing or wrong version in ${BIN}: ${todo//$'\n'/ }"
  exit 1
fi

# --- build -------------------------------------------------------------------------------------------
GO="$(command -v go || true)"
[[ -n "${GO}" ]] || GO=/usr/local/go/bin/go
[[ -x "${GO}" ]] || { log "no Go toolchain (looked in PATH and /usr/local/go/bin)"; exit 1; }

# Serialise concurrent callers (two CI steps, pytest workers): the second waits, then finds the cache.
mkdir -p "${CACHE}/bin" "${BIN}"
exec 9>"${CACHE}/bin/.${KUBERNETES_VERSION}.lock"
flock 9
todo="$(missing)"
if [[ -z "${todo}" ]]; then
  log "built by a concurrent run: ${BIN}"
  echo "${BIN}"
  exit 0
fi

# auto: the installed Go builds when new enough; an older one (>= 1.21) fetches the toolchain the
# pinned release needs through the Go module proxy instead of failing.
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
export CGO_ENABLED=0   # static binaries, as upstream releases them; no C toolchain needed
export GOFLAGS="-trimpath -buildvcs=false -mod=mod"
# Two cores, 24 GiB: -p 2 keeps peak memory low (the apiserver link is the largest step).
PARALLEL="${K8S_BUILD_PARALLELISM:-2}"

WORK="${CACHE}/build/${KUBERNETES_VERSION}"
rm -rf "${WORK}"
mkdir -p "${WORK}/out"
cd "${WORK}"
log "building in ${WORK} with $("${GO}" version) (missing: ${todo//$'\n'/ })"
start=${SECONDS}

if grep -qvxE 'helm|coredns|kueue' <<<"${todo}"; then
  "${GO}" mod init mnist-operator.local/k8s-binaries >/dev/null 2>&1
  "${GO}" mod edit -require="k8s.io/kubernetes@${KUBERNETES_VERSION}"

  # The staging modules are exactly the k8s.io/* modules k8s.io/kubernetes replaces with ./staging/...
  upstream_gomod="$("${GO}" mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "${upstream_gomod}" ]] || { log "could not download k8s.io/kubernetes@${KUBERNETES_VERSION}"; exit 1; }
  mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/.*#\1#p' "${upstream_gomod}")
  [[ ${#staging[@]} -gt 10 ]] || { log "found only ${#staging[@]} staging modules in ${upstream_gomod}"; exit 1; }
  for mod in "${staging[@]}"; do
    "${GO}" mod edit -replace="${mod}=${mod}@${STAGING_VERSION}"
  done
  log "replaced ${#staging[@]} staging modules with ${STAGING_VERSION}"

  wanted_etcd="$(sed -n 's#^[[:space:]]*go\.etcd\.io/etcd/server/v3 \(v[^[:space:]]*\).*#\1#p' "${upstream_gomod}" | head -1)"
  if [[ -n "${wanted_etcd}" && "${wanted_etcd}" != "${ETCD_VERSION}" ]]; then
    log "note: k8s.io/kubernetes@${KUBERNETES_VERSION} requires etcd ${wanted_etcd}; building pinned ${ETCD_VERSION}"
  fi
  "${GO}" mod edit -require="go.etcd.io/etcd/server/v3@${ETCD_VERSION}"

  # Version stamping as in upstream hack/lib/version.sh: the apiserver's version-skew and emulation
  # checks, kubectl version and /version all read these; unset they say v0.0.0-master.
  commit="$("${GO}" mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" \
    | sed -n 's/^[[:space:]]*"Hash": "\([0-9a-f]\{40\}\)".*/\1/p' | head -1)"
  build_date="$("${GO}" list -m -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" \
    | sed -n 's/^[[:space:]]*"Time": "\(.*\)",\{0,1\}$/\1/p' | head -1)"
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${pkg}.gitVersion=${KUBERNETES_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${K8S_MINOR}"
    ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=${build_date:-1970-01-01T00:00:00Z}"
    [[ -n "${commit}" ]] && ldflags+=" -X ${pkg}.gitCommit=${commit}"
  done

  packages=(
    k8s.io/kubernetes/cmd/kube-apiserver
    k8s.io/kubernetes/cmd/kube-controller-manager
    k8s.io/kubernetes/cmd/kube-scheduler
    k8s.io/kubernetes/cmd/kubectl
    k8s.io/kubernetes/cmd/kubelet
    k8s.io/kubernetes/cmd/kube-proxy
    go.etcd.io/etcd/server/v3
  )
  # Resolves the whole module graph and writes go.sum (checksums come from the checksum DB). Every
  # package is named @version: a bare `go get pkg` would upgrade its module to the newest release.
  k8s_packages=("${packages[@]:0:6}")
  "${GO}" get "${k8s_packages[@]/%/@${KUBERNETES_VERSION}}" "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >&2
  # Upstream release tags: notest drops test-only code paths, grpcnotrace drops x/net/trace.
  "${GO}" build -p "${PARALLEL}" -tags "selinux,notest,grpcnotrace" -ldflags "${ldflags}" \
    -o "${WORK}/out/" "${packages[@]}" >&2
  # A main package at the root of a /v3 module is named after the element before the version suffix.
  mv "${WORK}/out/server" "${WORK}/out/etcd"
  log "kubernetes + etcd built in $((SECONDS - start))s"
fi

# helm: its own module graph (its k8s.io/* versions differ), so a separate go install into the out dir.
if ! binary_ok helm; then
  hstart=${SECONDS}
  GOBIN="${WORK}/out" "${GO}" install -p "${PARALLEL}" \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" >&2
  log "helm built in $((SECONDS - hstart))s"
fi

# CoreDNS: its own module graph too. The whole default plugin set, as its releases ship it; a trimmed
# plugin list would need a generated main package, and the real node only uses `kubernetes`.
if ! binary_ok coredns; then
  cstart=${SECONDS}
  GOBIN="${WORK}/out" "${GO}" install -p "${PARALLEL}" -ldflags "-s -w" \
    "github.com/coredns/coredns@${COREDNS_VERSION}" >&2
  log "coredns built in $((SECONDS - cstart))s"
fi

# Kueue: its own module graph. Only cmd/kueue, with every job integration it links (Kueue's own release
# build); the tests enable batch/job alone. Its CRD bases and webhook configuration come from the same
# module version: the Kueue tests install exactly what this binary serves.
if ! binary_ok kueue; then
  kstart=${SECONDS}
  GOBIN="${WORK}/out" "${GO}" install -p "${PARALLEL}" \
    -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=${KUEUE_VERSION}" \
    "sigs.k8s.io/kueue/cmd/kueue@${KUEUE_VERSION}" >&2
  kueue_dir="$("${GO}" mod download -json "sigs.k8s.io/kueue@${KUEUE_VERSION}" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
  manifests="${WORK}/out/kueue-manifests/${KUEUE_VERSION}"
  mkdir -p "${manifests}/crds"
  cp "${kueue_dir}"/config/components/crd/bases/*.yaml "${manifests}/crds/"
  cp "${kueue_dir}/config/components/webhook/manifests.yaml" "${manifests}/webhook.yaml"
  chmod -R u+w "${WORK}/out/kueue-manifests"
  log "kueue built in $((SECONDS - kstart))s"
fi

# Move into place only after every build succeeded; mv within one filesystem is atomic per file.
for f in "${WORK}"/out/*; do
  rm -rf "${BIN:?}/$(basename "${f}")"
  mv -f "${f}" "${BIN}/$(basename "${f}")"
done
todo="$(missing)"
if [[ -n "${todo}" ]]; then
  log "built, but these do not report the pinned version: ${todo//$'\n'/ }"
  exit 1
fi
rm -rf "${WORK}"
log "done in $((SECONDS - start))s: ${BIN}"
echo "${BIN}"

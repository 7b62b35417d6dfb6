#!/usr/bin/env bash
# Build the images the real test nodes run (tests/support/k8s/realnode.py), without Docker and without a registry:
#   trainer      Dockerfile.trainer, as written, by BuildKit        ghcr.io/mnist-operator/trainer:<version>
#   operator     Dockerfile.operator, as written, by BuildKit       ghcr.io/mnist-operator/operator:<version>
#   pushgateway  Dockerfile.pushgateway (Debian's package), BuildKit mnist-operator.local/pushgateway:<deb version>
#   pause        hack/pause.c, static                               mnist-operator.local/pause:1.0
# as OCI archives that `ctr images import` loads into a node's containerd. Results are cached outside the
# repository, in ${MNIST_OPERATOR_CACHE:-$HOME/.cache/mnist-operator}/images/<hash of every input>/, so a warm
# run (no input changed) only prints the paths.
#
# Usage: hack/build-images.sh [--check]
#   --check   do not build; exit 1 unless every image for the current inputs is cached.
# The last lines on stdout are "<name><TAB><reference><TAB><archive>", one per image; logging goes to stderr.
#
# Why these pieces:
# - The Dockerfiles use heredocs and RUN --mount=type=cache, which need BuildKit's Dockerfile frontend;
#   buildkitd and buildctl are built from their Go module and run only for the build (OCI worker, Debian's
#   runc, host network so pip reaches PyPI, build containers nested in this process's memory cgroup).
# - The pinned base python:3.11.x-slim-bookworm cannot be pulled here (no registry is reachable). A stand-in
#   with the same Python minor version and the same layout for what the Dockerfiles use (`python` on PATH,
#   the venv module, groupadd/useradd) is made from Debian packages with mmdebstrap and given to the build
#   as the PYTHON_IMAGE build argument the Dockerfiles declare, through a BuildKit named context.
# - Where this machine trusts certificate authorities beyond Debian's (a TLS-inspecting egress proxy), the
#   stand-in base carries the machine's CA bundle and points pip (PIP_CERT, because pip verifies with its own
#   certifi bundle otherwise) and Python's ssl module (SSL_CERT_FILE) at it; elsewhere it is plain Debian.
#   The stand-in is for local builds only: the published images are built from the pinned python base and
#   carry neither the bundle nor the two variables.
# - Machine rules: build containers are nested in this process's memory cgroup (defaultCgroupParent) and the
#   folders made for them are removed at exit; BuildKit gives build steps no rlimits of their own (it drops
#   containerd's default RLIMIT_NOFILE from the spec), so nothing needs raising a limit.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "${HERE}/.." && pwd)"
BUILDKIT_VERSION=v0.34.2
DEBIAN_SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,python-is-python3,ca-certificates,passwd
PAUSE_REF=mnist-operator.local/pause:1.0
STAND_IN_BASE=mnist-operator.local/python-base:3.11-${DEBIAN_SUITE}

CHECK_ONLY=0
case "${1:-}" in
  --check) CHECK_ONLY=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

log() { echo "build-images: $*" >&2; }

CACHE="${MNIST_OPERATOR_CACHE:-$HOME/.cache/mnist-operator}"
# The Pushgateway package version pinned in the build and the tag: the host's installed one (the version the
# component tests run), else what the host's apt lists offer (apt-cache takes most of a second, dpkg-query not).
PUSHGATEWAY_VERSION="$(dpkg-query -W -f='${Version}' prometheus-pushgateway 2>/dev/null \
  || apt-cache policy prometheus-pushgateway 2>/dev/null | awk '/Candidate:/ {print $2}')"
[[ -n "${PUSHGATEWAY_VERSION}" && "${PUSHGATEWAY_VERSION}" != "(none)" ]] \
  || { log "apt knows no prometheus-pushgateway package (apt-get update?)"; exit 1; }
PUSHGATEWAY_REF="mnist-operator.local/pushgateway:$(tr '~+' '--' <<<"${PUSHGATEWAY_VERSION}")"
# The stand-in base's CA bundle and environment (see the top): part of its recipe, so a changed bundle
# rebuilds it.
BASE_ENV=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)
BASE_ADD=()
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  BASE_ADD=(/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt)
  BASE_ENV+=(PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt)
fi
BASE_RECIPE="${DEBIAN_SUITE} ${BASE_PACKAGES} ${BASE_ENV[*]} $(sha256sum "${HERE}/oci-image.py" | cut -c1-64)"
if [[ ${#BASE_ADD[@]} -gt 0 ]]; then
  BASE_RECIPE+=" $(sha256sum /etc/ssl/certs/ca-certificates.crt | cut -c1-64)"
fi
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "${REPO}/pyproject.toml" | head -1)"
[[ -n "${VERSION}" ]] || { log "no version in pyproject.toml"; exit 1; }

# Every input of every image: the build recipes and what the Dockerfiles COPY (.dockerignore allows only
# these). Untracked files count too, so a developer's uncommitted change rebuilds.
inputs_hash() {
  cd "${REPO}"
  {
    for f in hack/build-images.sh hack/oci-image.py hack/pause.c Dockerfile.trainer Dockerfile.operator \
      Dockerfile.pushgateway .dockerignore pyproject.toml README.md; do
      sha256sum "${f}"
    done
    git ls-files -co --exclude-standard -- api trainer operator | grep -v -e '__pycache__' -e '\.egg-info' \
      | LC_ALL=C sort | xargs -d '\n' sha256sum
    echo "${BUILDKIT_VERSION} ${BASE_RECIPE} ${PUSHGATEWAY_VERSION}"
  } | sha256sum | cut -c1-16
}

KEY="$(inputs_hash)"
OUT="${CACHE}/images/${KEY}"
IMAGES=(trainer operator pushgateway pause)

print_images() {
  local name
  for name in "${IMAGES[@]}"; do
    printf '%s\t%s\t%s\n' "${name}" "$(cat "${OUT}/${name}.ref")" "${OUT}/${name}.tar"
  done
}

complete() {
  local name
  for name in "${IMAGES[@]}"; do
    [[ -s "${OUT}/${name}.tar" && -s "${OUT}/${name}.ref" ]] || return 1
  done
}

if complete; then
  log "cached: ${OUT}"
  print_images
  exit 0
fi
if [[ "${CHECK_ONLY}" == 1 ]]; then
  log "not built for the current inputs (${OUT}): run hack/build-images.sh"
  exit 1
fi

mkdir -p "${CACHE}/images"
exec 9>"${CACHE}/images/.lock"
flock 9
if complete; then
  log "built by a concurrent run: ${OUT}"
  print_images
  exit 0
fi

# Go: on PATH, else the official tarball's place.
command -v go >/dev/null || [[ ! -x /usr/local/go/bin/go ]] || PATH="${PATH}:/usr/local/go/bin"
for tool in mmdebstrap runc gcc go sha256sum flock; do
  command -v "${tool}" >/dev/null || { log "${tool} missing (bash hack/install-system-deps.sh installs it)"; exit 1; }
done
start=${SECONDS}
WORK="$(mktemp -d "${CACHE}/images/.work-XXXXXX")"
BUILDKITD_PID=""
CGROUP_MADE=()
cleanup() {
  if [[ -n "${BUILDKITD_PID}" ]]; then
    kill "${BUILDKITD_PID}" 2>/dev/null || true
    wait "${BUILDKITD_PID}" 2>/dev/null || true
  fi
  local dir
  for ((i = ${#CGROUP_MADE[@]} - 1; i >= 0; i--)); do
    dir="${CGROUP_MADE[i]}"
    # Children first (build containers the worker did not remove), then the folder itself.
    find "${dir}" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
    rmdir "${dir}" 2>/dev/null || true
  done
  rm -rf "${WORK}"
}
trap cleanup EXIT
# An interrupted build still stops buildkitd and removes its cgroup folders (EXIT alone misses SIGTERM).
trap 'exit 130' INT
trap 'exit 143' TERM

# --- BuildKit -------------------------------------------------------------------------------------------------
BK_BIN="${CACHE}/buildkit/${BUILDKIT_VERSION}"
# A cached binary counts only if Go's build information says it was built from the pinned module version
# (a half-written file or an older build is rebuilt); `--version` would depend on link-time flags.
buildkit_ok() {
  [[ -x "${BK_BIN}/$1" ]] \
    && go version -m "${BK_BIN}/$1" 2>/dev/null | grep -qE "^[[:space:]]+mod[[:space:]]+github.com/moby/buildkit[[:space:]]+${BUILDKIT_VERSION}[[:space:]]"
}
if ! buildkit_ok buildkitd || ! buildkit_ok buildctl; then
  bstart=${SECONDS}
  # buildkit's go.mod has exclude directives, so `go install pkg@version` refuses it: build it from a
  # throw-away main module that requires it, as hack/k8s-binaries.sh does for Kubernetes.
  mod="${WORK}/buildkit-module"
  mkdir -p "${mod}" "${BK_BIN}"
  (
    cd "${mod}"
    export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" GOFLAGS="-mod=mod -trimpath -buildvcs=false" CGO_ENABLED=0
    go mod init mnist-operator.local/buildkit >/dev/null 2>&1
    go get "github.com/moby/buildkit/cmd/buildkitd@${BUILDKIT_VERSION}" \
      "github.com/moby/buildkit/cmd/buildctl@${BUILDKIT_VERSION}" >&2
    go build -p 2 -ldflags "-s -w -X github.com/moby/buildkit/version.Version=${BUILDKIT_VERSION}" \
      -o "${WORK}/bk-out/" github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl >&2
  )
  mv -f "${WORK}/bk-out/buildkitd" "${WORK}/bk-out/buildctl" "${BK_BIN}/"
  log "buildkit ${BUILDKIT_VERSION} built in $((SECONDS - bstart))s"
fi

# --- the stand-in Python base, from Debian packages --------------------------------------------------------------
# Keyed by its own recipe only, so editing this script or the sources reuses it (and BuildKit's layer cache,
# which is keyed by the base's digest).
BASE_KEY="$(sha256sum <<<"${BASE_RECIPE}" | cut -c1-16)"
BASES="${CACHE}/images/base-${BASE_KEY}"
if [[ ! -d "${BASES}/python-layout" ]]; then
  mkdir -p "${BASES}"
  bstart=${SECONDS}
  mmdebstrap --quiet --variant=minbase --include="${BASE_PACKAGES}" "${DEBIAN_SUITE}" "${WORK}/python-rootfs.tar" >&2
  add_args=()
  for spec in "${BASE_ADD[@]}"; do add_args+=(--add "${spec}"); done
  env_args=()
  for spec in "${BASE_ENV[@]}"; do env_args+=(--env "${spec}"); done
  python3 "${HERE}/oci-image.py" --ref "${STAND_IN_BASE}" --rootfs-tar "${WORK}/python-rootfs.tar" \
    "${add_args[@]}" "${env_args[@]}" --cmd '["python3"]' --layout "${WORK}/python-layout" >/dev/null
  rm -rf "${BASES}/python-layout"
  mv "${WORK}/python-layout" "${BASES}/python-layout"
  log "stand-in base built in $((SECONDS - bstart))s"
fi

# --- pause ------------------------------------------------------------------------------------------------------
mkdir -p "${WORK}/out"
gcc -static -Os -Wall -Wextra -o "${WORK}/pause" "${HERE}/pause.c"
python3 "${HERE}/oci-image.py" --ref "${PAUSE_REF}" --add "${WORK}/pause:/pause:755" \
  --entrypoint '["/pause"]' --user 65535:65535 --archive "${WORK}/out/pause.tar" >/dev/null
echo "${PAUSE_REF}" >"${WORK}/out/pause.ref"

# --- the Dockerfiles, by BuildKit ---------------------------------------------------------------------------------
memory_cgroup="$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)"
cgroup_parent="${memory_cgroup%/}/mnist-buildkit-$$"
# Build containers stay inside this process's memory cgroup; runc creates the same path in every other
# hierarchy (the hybrid host's unified one too), so it is made here in each and removed again at exit.
for hierarchy in /sys/fs/cgroup/*/; do
  [[ -e "${hierarchy}cgroup.procs" ]] || continue
  dir="${hierarchy%/}${cgroup_parent}"
  missing=()
  while [[ ! -d "${dir}" ]]; do
    missing=("${dir}" "${missing[@]}")
    dir="$(dirname "${dir}")"
  done
  for dir in "${missing[@]}"; do
    mkdir "${dir}"
    CGROUP_MADE+=("${dir}")
    # A new v1 cpuset has no CPUs or memory nodes until given its parent's.
    for f in cpuset.cpus cpuset.mems; do
      [[ -e "${dir}/${f}" ]] && cat "$(dirname "${dir}")/${f}" >"${dir}/${f}"
    done
  done
done
cat >"${WORK}/buildkitd.toml" <<EOF
root = "${CACHE}/buildkit/state"
[worker.oci]
  enabled = true
  binary = "$(command -v runc)"
  networkMode = "host"
  defaultCgroupParent = "${cgroup_parent}"
  gc = true
  gckeepstorage = "20GB"
[worker.containerd]
  enabled = false
EOF
socket="${WORK}/buildkitd.sock"
"${BK_BIN}/buildkitd" --config "${WORK}/buildkitd.toml" --addr "unix://${socket}" >"${WORK}/buildkitd.log" 2>&1 &
BUILDKITD_PID=$!
for _ in $(seq 100); do
  "${BK_BIN}/buildctl" --addr "unix://${socket}" debug workers >/dev/null 2>&1 && break
  kill -0 "${BUILDKITD_PID}" 2>/dev/null || { tail -20 "${WORK}/buildkitd.log" >&2; exit 1; }
  sleep 0.1
done

revision="$(git -C "${REPO}" rev-parse HEAD 2>/dev/null || echo unknown)"
# BuildKit takes a layout's image by digest (a tag alone is refused).
base_digest="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' \
  "${BASES}/python-layout/index.json")"
# gzip level 1: compressing the trainer's venv layer (~1.4 GB, rewritten on every code change) is most of a
# warm rebuild, and these archives only travel to local nodes. Layers already in BuildKit's cache keep their
# blobs (force-compression stays off).
built=()
for name in trainer operator pushgateway; do
  bstart=${SECONDS}
  case "${name}" in
    pushgateway)
      ref="${PUSHGATEWAY_REF}"
      args=(--opt build-arg:DEBIAN_IMAGE="${STAND_IN_BASE}" --opt build-arg:PUSHGATEWAY_VERSION="${PUSHGATEWAY_VERSION}")
      ;;
    *)
      ref="ghcr.io/mnist-operator/${name}:${VERSION}"
      args=(--opt build-arg:PYTHON_IMAGE="${STAND_IN_BASE}"
        --opt build-arg:VERSION="${VERSION}" --opt build-arg:REVISION="${revision}")
      ;;
  esac
  if ! "${BK_BIN}/buildctl" --addr "unix://${socket}" build \
    --frontend dockerfile.v0 \
    --local context="${REPO}" --local dockerfile="${REPO}" \
    --opt filename="Dockerfile.${name}" "${args[@]}" \
    --oci-layout "pythonbase=${BASES}/python-layout" \
    --opt "context:${STAND_IN_BASE}=oci-layout://pythonbase@${base_digest}" \
    --output "type=oci,name=${ref},dest=${WORK}/out/${name}.tar,compression=gzip,compression-level=1" \
    --progress plain >"${WORK}/${name}.log" 2>&1; then
    tail -40 "${WORK}/${name}.log" >&2
    tail -20 "${WORK}/buildkitd.log" >&2
    log "${name}: build failed"
    exit 1
  fi
  echo "${ref}" >"${WORK}/out/${name}.ref"
  built+=("${name} $((SECONDS - bstart))s")
  log "${name}: built in $((SECONDS - bstart))s, $(du -h "${WORK}/out/${name}.tar" | cut -f1)"
done

# Move into place only when every image is there. Older builds are pruned: the newest other one is kept
# (switching between two branches stays cheap), and base images of other recipes go.
rm -rf "${OUT}"
mv "${WORK}/out" "${OUT}"
find "${CACHE}/images" -mindepth 1 -maxdepth 1 -type d -name '????????????????' -not -name "${KEY}" \
  -printf '%T@ %p\n' | sort -rn | tail -n +2 | cut -d' ' -f2- | xargs -r rm -rf
find "${CACHE}/images" -mindepth 1 -maxdepth 1 -type d -name 'base-*' -not -name "base-${BASE_KEY}" \
  -exec rm -rf {} +
log "done in $((SECONDS - start))s (${built[*]}): ${OUT}"
for name in "${IMAGES[@]}"; do
  log "  ${name}: $(du -h "${OUT}/${name}.tar" | cut -f1)"
done
print_images

#!/usr/bin/env bash
# Tier 4, end to end on kind: the real images, the repo's Helm chart, one real training, then cleanup.
#
#   hack/kind-e2e.sh              run it all (about 10-15 minutes, mostly building and loading the trainer image)
#   hack/kind-e2e.sh preflight    only check the prerequisites: one "missing: ..." line each; exit 3 if any
#   hack/kind-e2e.sh helm-values  print the chart values this script sets, one KEY=VALUE per line
#   hack/kind-e2e.sh training     print the MnistTraining it would apply (needs only kubectl)
#
# Steps: create a kind cluster -> docker build both images -> kind load them -> helm install
# charts/mnist-operator (+ helm test) -> optionally start an in-cluster dataset mirror -> apply
# manifests/samples/mnist-training.yaml with a few fields changed for speed -> wait for Succeeded -> check
# `kubectl get mnisttrainings` columns, the trainer's `kubectl logs`, the Pushgateway's gangplank_* metrics
# -> delete the training and check its Job, pods and metrics are gone -> helm uninstall -> delete the cluster.
# Every check leaves its evidence in $E2E_ARTIFACTS; tests/e2e/test_kind.py runs this script and checks those
# files again. docs/kind.md explains the settings below.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# --- settings (environment variables) ------------------------------------------------------------------------
CLUSTER="${E2E_CLUSTER_NAME:-mnist-e2e}"
NODE_IMAGE="${E2E_NODE_IMAGE:-}"           # kindest/node image; empty: the one of the installed kind release
REUSE_CLUSTER="${E2E_REUSE_CLUSTER:-0}"    # 1: use an existing cluster of that name (it is then kept)
KEEP_CLUSTER="${E2E_KEEP_CLUSTER:-0}"      # 1: keep the cluster afterwards, for debugging
IMAGE_TAG="${E2E_IMAGE_TAG:-e2e}"
OPERATOR_REPOSITORY="${E2E_OPERATOR_REPOSITORY:-ghcr.io/mnist-operator/operator}"
TRAINER_REPOSITORY="${E2E_TRAINER_REPOSITORY:-ghcr.io/mnist-operator/trainer}"
RELEASE="${E2E_RELEASE:-mnist-operator}"
SYSTEM_NAMESPACE="${E2E_SYSTEM_NAMESPACE:-mnist-operator}"  # the Helm release's namespace
NAMESPACE="${E2E_NAMESPACE:-mnist-e2e}"                      # the training's namespace
TRAINING="${E2E_TRAINING_NAME:-e2e-mnist}"
MODEL="${E2E_MODEL:-mlp}"                  # mlp trains an epoch in seconds; convnet is the seeds' model
EPOCHS="${E2E_EPOCHS:-1}"
CPU="${E2E_CPU:-500m}"                     # the sample asks for 2 CPUs, more than a 2-core kind node has free
MEMORY="${E2E_MEMORY:-2Gi}"
DATASET_NAME="${E2E_DATASET_NAME:-mnist}"  # mnist | fashion-mnist
DATASET_URL="${E2E_DATASET_URL:-}"         # a mirror URL (spec.dataset.url); empty: the canonical download
DATASET_SHA256="${E2E_DATASET_SHA256:-}"   # JSON object for spec.dataset.sha256, e.g. {"mnist.npz": "<hex>"}
DATASET_DIR="${E2E_DATASET_DIR:-}"         # local files to serve from an in-cluster mirror instead
MIN_TEST_ACCURACY="${E2E_MIN_TEST_ACCURACY:-}"  # spec.releaseCriteria.minTestAccuracy; default below
TRAIN_TIMEOUT="${E2E_TRAIN_TIMEOUT:-1200}" # seconds for the training (also its activeDeadlineSeconds)
ARTIFACTS="${E2E_ARTIFACTS:-${ROOT}/runs/e2e/$(date -u +%Y%m%dT%H%M%SZ)}"
read -r -a EXTRA_HELM_ARGS <<<"${E2E_HELM_ARGS:-}"  # e.g. "--set pollIntervalSeconds=2"

OPERATOR_IMAGE="${OPERATOR_REPOSITORY}:${IMAGE_TAG}"
TRAINER_IMAGE="${TRAINER_REPOSITORY}:${IMAGE_TAG}"
CHART="${ROOT}/charts/mnist-operator"
SAMPLE="${ROOT}/manifests/samples/mnist-training.yaml"
MIRROR_MANIFEST="${ROOT}/tests/e2e/mirror/mirror.yaml"
OUTPUT_CLAIM="e2e-output"
GROUP="training.mnist-operator.io"
# What README.md and docs/operator.md promise `kubectl get mnisttrainings` shows.
COLUMNS_DEFAULT="NAME PHASE EPOCH ACCURACY VAL-ACC LOSS AGE"
COLUMNS_WIDE="NAME PHASE EPOCH ACCURACY VAL-ACC LOSS TEST-ACC POD MODEL AGE"
if [[ -z "${MIN_TEST_ACCURACY}" ]]; then
  # One mlp epoch reaches about 0.95 on MNIST and 0.82 on Fashion-MNIST; chance is 0.1.
  if [[ "${DATASET_NAME}" == mnist ]]; then MIN_TEST_ACCURACY=0.8; else MIN_TEST_ACCURACY=0.7; fi
fi

# The chart's values, all in this one place: keep them in line with charts/mnist-operator/values.yaml (a unit
# test in tests/e2e/test_kind_script.py checks every key exists there). Images are loaded into the node by kind, and
# the chart's default pull policy (IfNotPresent) then never pulls them.
HELM_VALUES=(
  "image.repository=${OPERATOR_REPOSITORY}"
  "image.tag=${IMAGE_TAG}"
  "trainer.image.repository=${TRAINER_REPOSITORY}"
  "trainer.image.tag=${IMAGE_TAG}"
  "pushgateway.enabled=true"
)

# Tools: each may be named by a variable (DOCKER, KIND, HELM, KUBECTL, CURL); otherwise PATH, and for helm and
# kubectl also the pinned binaries of the control-plane tier in MNIST_K8S_BIN (the folder hack/k8s-binaries.sh
# prints; hack/run-tests.sh exports it).
tool() {
  local name="$1" override="$2"
  if [[ -n "${override}" ]]; then
    echo "${override}"
  elif command -v "${name}" >/dev/null 2>&1; then
    command -v "${name}"
  elif [[ -n "${MNIST_K8S_BIN:-}" && -x "${MNIST_K8S_BIN}/${name}" ]]; then
    echo "${MNIST_K8S_BIN}/${name}"
  else
    echo "${name}"
  fi
}
DOCKER="$(tool docker "${DOCKER:-}")"
KIND="$(tool kind "${KIND:-}")"
HELM="$(tool helm "${HELM:-}")"
KUBECTL="$(tool kubectl "${KUBECTL:-}")"
CURL="$(tool curl "${CURL:-}")"

log() { printf '[kind-e2e %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}
first_error_line() {
  local text="$1" line
  line="$(grep -i -m1 -E 'cannot connect|error|denied|not found|no such' <<<"${text}" || true)"
  [[ -n "${line}" ]] || line="$(grep -m1 -v '^[[:space:]]*$' <<<"${text}" || true)"
  echo "${line:-no output}"
}

# --- preflight -----------------------------------------------------------------------------------------------
preflight() {
  local missing=() out
  if ! command -v "${DOCKER}" >/dev/null 2>&1; then
    missing+=("no docker CLI (DOCKER=${DOCKER})")
  else
    # The CLI alone is not enough: the daemon must answer.
    if ! out="$(timeout 30 "${DOCKER}" info --format '{{.ServerVersion}}' 2>&1)"; then
      missing+=("no Docker engine reachable (\`docker info\`: $(first_error_line "${out}"))")
    elif ! out="$(timeout 30 "${DOCKER}" buildx version 2>&1)"; then
      missing+=("no docker buildx (BuildKit builds the Dockerfiles' heredocs): $(first_error_line "${out}")")
    fi
  fi
  command -v "${KIND}" >/dev/null 2>&1 ||
    missing+=("no kind binary (KIND=${KIND}; e.g. go install sigs.k8s.io/kind@v0.33.0)")
  command -v "${HELM}" >/dev/null 2>&1 ||
    missing+=("no helm binary (HELM=${HELM}; or run hack/k8s-binaries.sh and set MNIST_K8S_BIN)")
  command -v "${KUBECTL}" >/dev/null 2>&1 || missing+=("no kubectl binary (KUBECTL=${KUBECTL})")
  command -v "${CURL}" >/dev/null 2>&1 || missing+=("no curl binary (CURL=${CURL})")
  local item
  for item in "${missing[@]}"; do
    echo "missing: ${item}"
  done
  [[ ${#missing[@]} -eq 0 ]] || return 3
}

# --- cluster -------------------------------------------------------------------------------------------------
KUBECONFIG_FILE=""
CREATED_CLUSTER=0
PORT_FORWARD_PID=""

k() { "${KUBECTL}" --kubeconfig "${KUBECONFIG_FILE}" "$@"; }
h() {
  # helm's caches and repositories go under the artifacts, never into the developer's own.
  HELM_CACHE_HOME="${ARTIFACTS}/helm/cache" HELM_CONFIG_HOME="${ARTIFACTS}/helm/config" \
    HELM_DATA_HOME="${ARTIFACTS}/helm/data" "${HELM}" --kubeconfig "${KUBECONFIG_FILE}" "$@"
}

# grep without -q reads all its input: with pipefail, an early exit could fail the pipeline through SIGPIPE.
cluster_exists() { "${KIND}" get clusters 2>/dev/null | grep -x "${CLUSTER}" >/dev/null; }

create_cluster() {
  if cluster_exists; then
    [[ "${REUSE_CLUSTER}" == 1 ]] ||
      die "a kind cluster named ${CLUSTER} exists; delete it (${KIND} delete cluster --name ${CLUSTER}) or set E2E_REUSE_CLUSTER=1"
    log "reusing kind cluster ${CLUSTER}"
    "${KIND}" export kubeconfig --name "${CLUSTER}" --kubeconfig "${KUBECONFIG_FILE}"
    return
  fi
  local args=(create cluster --name "${CLUSTER}" --kubeconfig "${KUBECONFIG_FILE}" --wait 180s)
  if [[ -n "${NODE_IMAGE}" ]]; then
    args+=(--image "${NODE_IMAGE}")
  fi
  log "creating kind cluster ${CLUSTER}"
  CREATED_CLUSTER=1
  "${KIND}" "${args[@]}"
  k version >"${ARTIFACTS}/kubernetes-version.txt"
}

delete_cluster() {
  log "deleting kind cluster ${CLUSTER}"
  "${KIND}" delete cluster --name "${CLUSTER}"
  CREATED_CLUSTER=0
  ! cluster_exists || die "kind cluster ${CLUSTER} still listed after deletion"
}

stop_port_forward() {
  if [[ -n "${PORT_FORWARD_PID}" ]]; then
    kill "${PORT_FORWARD_PID}" 2>/dev/null || true
    wait "${PORT_FORWARD_PID}" 2>/dev/null || true
    PORT_FORWARD_PID=""
  fi
}

collect_diagnostics() {
  local dir="${ARTIFACTS}/diagnostics"
  mkdir -p "${dir}"
  log "collecting diagnostics in ${dir}"
  k get nodes,all,pvc,mnisttrainings -A -o wide >"${dir}/objects.txt" 2>&1 || true
  k get events -A --sort-by=.lastTimestamp >"${dir}/events.txt" 2>&1 || true
  k -n "${NAMESPACE}" describe mnisttrainings,jobs,pods,pvc >"${dir}/describe-${NAMESPACE}.txt" 2>&1 || true
  k -n "${SYSTEM_NAMESPACE}" describe deployments,pods >"${dir}/describe-${SYSTEM_NAMESPACE}.txt" 2>&1 || true
  local namespace pod
  for namespace in "${SYSTEM_NAMESPACE}" "${NAMESPACE}"; do
    for pod in $(k -n "${namespace}" get pods -o name 2>/dev/null); do
      k -n "${namespace}" logs "${pod}" --all-containers >"${dir}/logs-${namespace}-${pod#pod/}.txt" 2>&1 || true
    done
  done
  "${KIND}" export logs "${dir}/kind" --name "${CLUSTER}" >/dev/null 2>&1 || true
}

on_exit() {
  local code=$?
  stop_port_forward
  if [[ "${code}" != 0 && -f "${KUBECONFIG_FILE}" ]] && cluster_exists; then
    collect_diagnostics
  fi
  if [[ "${CREATED_CLUSTER}" == 1 && "${KEEP_CLUSTER}" != 1 ]]; then
    "${KIND}" delete cluster --name "${CLUSTER}" >&2 || true
  elif [[ -f "${KUBECONFIG_FILE}" ]] && cluster_exists; then
    log "cluster ${CLUSTER} kept: export KUBECONFIG=${KUBECONFIG_FILE}; delete it with: ${KIND} delete cluster --name ${CLUSTER}"
  fi
  if [[ "${code}" == 0 ]]; then log "passed; evidence in ${ARTIFACTS}"; else log "failed (exit ${code}); evidence in ${ARTIFACTS}"; fi
  exit "${code}"
}

# --- images --------------------------------------------------------------------------------------------------
build_images() {
  local version revision
  version="$(sed -n '/^version = /{s/^version = "\(.*\)"$/\1/p;q;}' "${ROOT}/pyproject.toml")"
  revision="$(git -C "${ROOT}" rev-parse HEAD 2>/dev/null || echo unknown)"
  log "building ${OPERATOR_IMAGE} and ${TRAINER_IMAGE} (version ${version}, revision ${revision})"
  DOCKER_BUILDKIT=1 "${DOCKER}" build --progress=plain -f "${ROOT}/Dockerfile.operator" -t "${OPERATOR_IMAGE}" \
    --build-arg "VERSION=${version}" --build-arg "REVISION=${revision}" "${ROOT}"
  DOCKER_BUILDKIT=1 "${DOCKER}" build --progress=plain -f "${ROOT}/Dockerfile.trainer" -t "${TRAINER_IMAGE}" \
    --build-arg TF_VARIANT=cpu --build-arg "VERSION=${version}" --build-arg "REVISION=${revision}" "${ROOT}"
  "${DOCKER}" image inspect "${OPERATOR_IMAGE}" "${TRAINER_IMAGE}" >"${ARTIFACTS}/images.json"

  local image user
  for image in "${OPERATOR_IMAGE}" "${TRAINER_IMAGE}"; do
    user="$("${DOCKER}" image inspect -f '{{.Config.User}}' "${image}")"
    [[ "${user}" == 1000:1000 ]] || die "${image} runs as '${user}', not 1000:1000"
  done
  # As in a pod: another uid than root, a read-only root filesystem, /tmp the only writable place.
  log "checking the images start on a read-only root filesystem"
  "${DOCKER}" run --rm --read-only --tmpfs /tmp "${OPERATOR_IMAGE}" --help >/dev/null ||
    die "the operator image does not start read-only"
  "${DOCKER}" run --rm --read-only --tmpfs /tmp --entrypoint python "${OPERATOR_IMAGE}" -c \
    'import importlib.util, sys; sys.exit(importlib.util.find_spec("tensorflow") is not None)' ||
    die "the operator image contains TensorFlow"
  "${DOCKER}" run --rm --read-only --tmpfs /tmp -e CUDA_VISIBLE_DEVICES= --entrypoint python "${TRAINER_IMAGE}" -c \
    'import keras, tensorflow, mnist_trainer.pipeline; print("tensorflow", tensorflow.__version__)' ||
    die "the trainer image cannot import TensorFlow and the trainer on a read-only root filesystem"
}

load_images() {
  log "loading the images into kind"
  "${KIND}" load docker-image --name "${CLUSTER}" "${OPERATOR_IMAGE}" "${TRAINER_IMAGE}"
}

# --- install -------------------------------------------------------------------------------------------------
install_chart() {
  [[ -f "${CHART}/Chart.yaml" ]] || die "no chart at ${CHART}: the e2e installs the repo's own Helm chart"
  local sets=() value
  for value in "${HELM_VALUES[@]}"; do
    sets+=(--set "${value}")
  done
  log "helm install ${RELEASE} ${CHART} -n ${SYSTEM_NAMESPACE} ${sets[*]} ${EXTRA_HELM_ARGS[*]}"
  h upgrade --install "${RELEASE}" "${CHART}" -n "${SYSTEM_NAMESPACE}" --create-namespace \
    "${sets[@]}" "${EXTRA_HELM_ARGS[@]}" --wait --timeout 5m
  k wait --for condition=Established "crd/mnisttrainings.${GROUP}" --timeout 60s
  # The chart's own check: CRD served, operator answering /healthz, Pushgateway ready.
  h test "${RELEASE}" -n "${SYSTEM_NAMESPACE}" --logs --timeout 3m >"${ARTIFACTS}/helm-test.txt" 2>&1 ||
    die "helm test failed: $(tail -n 20 "${ARTIFACTS}/helm-test.txt")"
}

prepare_namespace() {
  # Restricted Pod Security: the trainer pods the operator builds must pass it, as in a hardened cluster.
  k create namespace "${NAMESPACE}" --dry-run=client -o yaml | k apply -f -
  k label --overwrite namespace "${NAMESPACE}" pod-security.kubernetes.io/enforce=restricted
  # kind's default StorageClass (local-path) provides the output volume, so a model outlives its pod.
  k -n "${NAMESPACE}" apply -f - <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: ${OUTPUT_CLAIM}
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
EOF
}

# Sets DATASET_URL and DATASET_SHA256 to files served from inside the cluster.
start_mirror() {
  local files=() file pod sums=()
  if [[ "${DATASET_NAME}" == mnist && -f "${DATASET_DIR}/mnist.npz" ]]; then
    files=(mnist.npz)
  else
    files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
  fi
  for file in "${files[@]}"; do
    [[ -f "${DATASET_DIR}/${file}" ]] || die "E2E_DATASET_DIR=${DATASET_DIR} has no ${file}"
  done
  log "serving ${files[*]} from an in-cluster mirror"
  sed "s|@TRAINER_IMAGE@|${TRAINER_IMAGE}|g" "${MIRROR_MANIFEST}" | k -n "${NAMESPACE}" apply -f -
  k -n "${NAMESPACE}" wait --for condition=Ready pod/mnist-mirror --timeout 120s
  pod=mnist-mirror
  for file in "${files[@]}"; do
    k cp "${DATASET_DIR}/${file}" "${NAMESPACE}/${pod}:/srv/${file}" -c mirror
    # Sums of the files as served: right for recompressed mirrors (e.g. Debian's Fashion-MNIST) too.
    sums+=("\"${file}\": \"$(sha256sum "${DATASET_DIR}/${file}" | cut -d' ' -f1)\"")
  done
  local base="http://mnist-mirror.${NAMESPACE}.svc:8000/"
  if [[ "${files[0]}" == mnist.npz ]]; then DATASET_URL="${base}mnist.npz"; else DATASET_URL="${base}"; fi
  DATASET_SHA256="{$(
    IFS=,
    echo "${sums[*]}"
  )}"
}

# --- the training --------------------------------------------------------------------------------------------
# Prints the training to apply: the sample as users know it, with what makes it fast and self-checking here. A
# merge patch, so everything else (optimizer, seed, metrics job, ...) stays the sample's.
render_training() {
  local url=null sha256=null patch
  [[ -z "${DATASET_URL}" ]] || url="\"${DATASET_URL}\""
  [[ -z "${DATASET_SHA256}" ]] || sha256="${DATASET_SHA256}"
  patch="$(
    cat <<EOF
{"metadata": {"name": "${TRAINING}"},
 "spec": {"model": "${MODEL}", "epochs": ${EPOCHS},
          "dataset": {"name": "${DATASET_NAME}", "url": ${url}, "sha256": ${sha256}},
          "resources": {"cpu": "${CPU}", "memory": "${MEMORY}"},
          "output": {"claimName": "${OUTPUT_CLAIM}"},
          "releaseCriteria": {"minTestAccuracy": ${MIN_TEST_ACCURACY}},
          "runPolicy": {"backoffLimit": 1, "activeDeadlineSeconds": ${TRAIN_TIMEOUT}}}}
EOF
  )"
  # --local: kubectl only applies the patch to the file; it talks to no cluster.
  "${KUBECTL}" patch --local -f "${SAMPLE}" --type merge -p "${patch}" -o yaml
}

apply_training() {
  render_training >"${ARTIFACTS}/training.yaml"
  log "applying ${SAMPLE#"${ROOT}"/} as ${NAMESPACE}/${TRAINING} (model ${MODEL}, ${EPOCHS} epoch(s))"
  k -n "${NAMESPACE}" apply -f "${ARTIFACTS}/training.yaml"
}

wait_for_success() {
  local deadline=$((SECONDS + TRAIN_TIMEOUT)) seen="" now phase
  while true; do
    now="$(k -n "${NAMESPACE}" get mnisttraining "${TRAINING}" \
      -o jsonpath='{.status.phase} {.status.progress} {.status.accuracy} {.status.testAccuracy}' 2>/dev/null || true)"
    if [[ "${now}" != "${seen}" ]]; then
      seen="${now}"
      k -n "${NAMESPACE}" get mnisttraining "${TRAINING}" --no-headers 2>/dev/null | tee -a "${ARTIFACTS}/progress.txt" >&2 || true
    fi
    phase="${now%% *}"
    case "${phase}" in
      Succeeded) return 0 ;;
      Failed) die "the training failed: $(k -n "${NAMESPACE}" get mnisttraining "${TRAINING}" -o jsonpath='{.status.message}')" ;;
    esac
    ((SECONDS < deadline)) || die "no Succeeded after ${TRAIN_TIMEOUT}s (phase '${phase}')"
    sleep 5
  done
}

at_least() { awk -v value="$1" -v minimum="$2" 'BEGIN { exit !(value + 0 >= minimum + 0) }'; }

check_columns() {
  k -n "${NAMESPACE}" get mnisttrainings >"${ARTIFACTS}/get.txt"
  k -n "${NAMESPACE}" get mnisttrainings -o wide >"${ARTIFACTS}/get-wide.txt"
  k -n "${NAMESPACE}" get mt "${TRAINING}" >/dev/null || die "the short name 'mt' does not resolve"
  local header wide name phase epoch accuracy val_accuracy loss
  header="$(head -n 1 "${ARTIFACTS}/get.txt" | tr -s ' ' | sed 's/ *$//')"
  wide="$(head -n 1 "${ARTIFACTS}/get-wide.txt" | tr -s ' ' | sed 's/ *$//')"
  [[ "${header}" == "${COLUMNS_DEFAULT}" ]] || die "columns are '${header}', expected '${COLUMNS_DEFAULT}'"
  [[ "${wide}" == "${COLUMNS_WIDE}" ]] || die "-o wide columns are '${wide}', expected '${COLUMNS_WIDE}'"
  local row
  row="$(grep "^${TRAINING} " "${ARTIFACTS}/get.txt")" || die "no row for ${TRAINING}: $(cat "${ARTIFACTS}/get.txt")"
  read -r name phase epoch accuracy val_accuracy loss _ <<<"${row}"
  [[ "${name}" == "${TRAINING}" && "${phase}" == Succeeded ]] || die "row: $(cat "${ARTIFACTS}/get.txt")"
  [[ "${epoch}" == "${EPOCHS}/${EPOCHS}" ]] || die "Epoch column is '${epoch}', expected ${EPOCHS}/${EPOCHS}"
  local figure
  for figure in "${accuracy}" "${val_accuracy}" "${loss}"; do
    [[ "${figure}" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "a figure column is '${figure}': $(cat "${ARTIFACTS}/get.txt")"
  done

  k -n "${NAMESPACE}" get mnisttraining "${TRAINING}" -o json >"${ARTIFACTS}/training.json"
  local test_accuracy model_path succeeded
  test_accuracy="$(k -n "${NAMESPACE}" get mnisttraining "${TRAINING}" -o jsonpath='{.status.testAccuracy}')"
  at_least "${test_accuracy:-0}" "${MIN_TEST_ACCURACY}" || die "test accuracy ${test_accuracy} < ${MIN_TEST_ACCURACY}"
  model_path="$(k -n "${NAMESPACE}" get mnisttraining "${TRAINING}" -o jsonpath='{.status.modelPath}')"
  [[ "${model_path}" == "pvc://${OUTPUT_CLAIM}/${NAMESPACE}/${TRAINING}/model.keras" ]] ||
    die "modelPath is '${model_path}'"
  succeeded="$(k -n "${NAMESPACE}" get mnisttraining "${TRAINING}" \
    -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].status}')"
  [[ "${succeeded}" == True ]] || die "condition Succeeded is '${succeeded}'"
  log "columns ok; test accuracy ${test_accuracy}; model at ${model_path}"
}

check_logs() {
  local job
  job="$(k -n "${NAMESPACE}" get mnisttraining "${TRAINING}" -o jsonpath='{.status.jobName}')"
  [[ -n "${job}" ]] || die "status.jobName is empty"
  k -n "${NAMESPACE}" logs "job/${job}" >"${ARTIFACTS}/trainer.log"
  grep -q "epoch ${EPOCHS}/${EPOCHS} " "${ARTIFACTS}/trainer.log" || die "no 'epoch ${EPOCHS}/${EPOCHS}' line in kubectl logs"
  grep -q "done: test accuracy" "${ARTIFACTS}/trainer.log" || die "no closing 'done: test accuracy' line in kubectl logs"
  if grep -q $'\r' "${ARTIFACTS}/trainer.log"; then
    die "kubectl logs has carriage returns (progress bars) in it"
  fi
  log "kubectl logs ok: $(grep -c . "${ARTIFACTS}/trainer.log") lines, no carriage returns"
}

# Port-forwards to the Pushgateway the trainer pushed to (read from its Job, so it does not depend on how the
# chart names the Service) and prints the local URL.
PUSHGATEWAY_LOCAL=""
forward_pushgateway() {
  local job url rest host port service service_namespace
  job="$(k -n "${NAMESPACE}" get mnisttraining "${TRAINING}" -o jsonpath='{.status.jobName}')"
  url="$(k -n "${NAMESPACE}" get job "${job}" \
    -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="MNIST_PUSHGATEWAY_URL")].value}')"
  [[ "${url}" == http://* ]] || die "the trainer's MNIST_PUSHGATEWAY_URL is '${url}' (pushgateway.enabled=true should set it)"
  rest="${url#http://}"
  host="${rest%%/*}"
  port=80
  if [[ "${host}" == *:* ]]; then
    port="${host##*:}"
    host="${host%%:*}"
  fi
  service="${host%%.*}"
  service_namespace="${NAMESPACE}"
  if [[ "${host}" == *.* ]]; then
    service_namespace="${host#*.}"
    service_namespace="${service_namespace%%.*}"
  fi
  # Loopback only; kubectl picks a free local port and says which. kubectl itself, not the k function, goes
  # to the background: $! must be its pid, or stopping it would leave kubectl running.
  "${KUBECTL}" --kubeconfig "${KUBECONFIG_FILE}" -n "${service_namespace}" port-forward --address 127.0.0.1 \
    "svc/${service}" ":${port}" >"${ARTIFACTS}/port-forward.log" 2>&1 &
  PORT_FORWARD_PID=$!
  local local_port="" tries
  for tries in $(seq 60); do
    local_port="$(sed -n '/^Forwarding from 127\.0\.0\.1:/{s/^Forwarding from 127\.0\.0\.1:\([0-9]*\) .*/\1/p;q;}' \
      "${ARTIFACTS}/port-forward.log")"
    [[ -z "${local_port}" ]] || break
    kill -0 "${PORT_FORWARD_PID}" 2>/dev/null || die "port-forward ended: $(cat "${ARTIFACTS}/port-forward.log")"
    sleep 0.5
  done
  [[ -n "${local_port}" ]] || die "port-forward to ${service_namespace}/${service} did not start after ${tries} tries"
  PUSHGATEWAY_LOCAL="http://127.0.0.1:${local_port}"
  log "Pushgateway ${url} forwarded to ${PUSHGATEWAY_LOCAL}"
}

check_metrics() {
  forward_pushgateway
  "${CURL}" -fsS "${PUSHGATEWAY_LOCAL}/metrics" >"${ARTIFACTS}/pushgateway-metrics.txt"
  # The seeds' check, narrowed to this run's group.
  local series name
  for name in gangplank_train_accuracy gangplank_train_epochs_count gangplank_test_accuracy; do
    series="$(grep -E "^${name}\{.*training=\"${TRAINING}\"" "${ARTIFACTS}/pushgateway-metrics.txt" || true)"
    [[ -n "${series}" ]] || die "no ${name} series for training=\"${TRAINING}\" on the Pushgateway"
  done
  log "Pushgateway ok: $(grep -c '^gangplank_train' "${ARTIFACTS}/pushgateway-metrics.txt") gangplank_train series"
}

check_cleanup() {
  log "deleting ${NAMESPACE}/${TRAINING}"
  k -n "${NAMESPACE}" delete mnisttraining "${TRAINING}" --wait=true --timeout=120s
  local deadline=$((SECONDS + 180)) children
  while true; do
    # Garbage collection (owner references) removes the Job, and the Job's pods with it.
    children="$(k -n "${NAMESPACE}" get jobs,pods -l "${GROUP}/name=${TRAINING}" -o name)" ||
      die "could not list the training's children"
    [[ -n "${children}" ]] || break
    ((SECONDS < deadline)) || die "still there 180s after deletion: ${children}"
    sleep 3
  done
  : >"${ARTIFACTS}/children-after-delete.txt"
  deadline=$((SECONDS + 120))
  while true; do
    # The operator deletes the run's Pushgateway group when the resource goes.
    "${CURL}" -fsS "${PUSHGATEWAY_LOCAL}/metrics" >"${ARTIFACTS}/pushgateway-after-delete.txt"
    grep -E "^[^#].*training=\"${TRAINING}\"" "${ARTIFACTS}/pushgateway-after-delete.txt" >/dev/null || break
    ((SECONDS < deadline)) || die "the run's metrics are still on the Pushgateway 120s after deletion"
    sleep 3
  done
  stop_port_forward
  log "cleanup ok: no Job, no pods, no metrics left"
}

uninstall_chart() {
  h uninstall "${RELEASE}" -n "${SYSTEM_NAMESPACE}" --wait --timeout 3m
  local left
  left="$(k -n "${SYSTEM_NAMESPACE}" get deployments,services -l "app.kubernetes.io/instance=${RELEASE}" -o name)" ||
    die "could not list the release's objects"
  [[ -z "${left}" ]] || die "left after helm uninstall: ${left}"
}

# --- main ----------------------------------------------------------------------------------------------------
main() {
  preflight >&2 || die "prerequisites missing (see above)"
  mkdir -p "${ARTIFACTS}"
  ARTIFACTS="$(cd "${ARTIFACTS}" && pwd)"
  KUBECONFIG_FILE="${ARTIFACTS}/kubeconfig"
  trap on_exit EXIT
  # A signal goes through exit, so on_exit still collects diagnostics and deletes the cluster.
  trap 'exit 143' TERM
  trap 'exit 130' INT
  # The effective settings, for the test that re-checks the evidence.
  {
    echo "TRAINING=${TRAINING}"
    echo "NAMESPACE=${NAMESPACE}"
    echo "EPOCHS=${EPOCHS}"
    echo "MIN_TEST_ACCURACY=${MIN_TEST_ACCURACY}"
    echo "OUTPUT_CLAIM=${OUTPUT_CLAIM}"
  } >"${ARTIFACTS}/settings.env"

  create_cluster
  build_images
  load_images
  install_chart
  prepare_namespace
  if [[ -n "${DATASET_DIR}" ]]; then
    [[ -z "${DATASET_URL}" ]] || die "set E2E_DATASET_DIR or E2E_DATASET_URL, not both"
    start_mirror
  fi
  apply_training
  wait_for_success
  check_columns
  check_logs
  check_metrics
  check_cleanup
  uninstall_chart
  if [[ "${CREATED_CLUSTER}" == 1 && "${KEEP_CLUSTER}" != 1 ]]; then
    delete_cluster
  fi
  echo "ok" >"${ARTIFACTS}/passed"
}

case "${1:-run}" in
  run) main ;;
  preflight) preflight ;;
  helm-values) printf '%s\n' "${HELM_VALUES[@]}" ;;
  training) render_training ;;
  *)
    echo "usage: $0 [run|preflight|helm-values|training]" >&2
    exit 2
    ;;
esac

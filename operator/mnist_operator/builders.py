"""Pure builders: a training's children as plain dicts, ready to send to the API server.

Nothing here talks to the cluster; every field is derived from the resource and the operator's Config,
so the unit tests can check all of them. A training of ``spec.workers: N > 1`` has two children: one
Indexed Job of N pods and a headless Service named like the Job that gives each pod a DNS name
(``mnist_api.distribution``); a single-worker training has only its Job, exactly as before workers.
"""

import re
from dataclasses import dataclass
from typing import Any, Final

from mnist_api import MnistTraining, codes_that_fail_at_once, pod_env
from mnist_api.distribution import WORKER_PORT, WORKER_PORT_NAME, cluster_worker_hosts
from mnist_api.layout import (
    BASE_MODEL_MOUNT_PATH,
    DATA_MOUNT_PATH,
    DATASET_MOUNT_PATH,
    OUTPUT_MOUNT_PATH,
    PREDICT_INPUT_MOUNT_PATH,
    TMP_MOUNT_PATH,
)

from .config import Config
from .naming import TRAINER_CONTAINER, child_labels, job_name, kueue_labels, worker_selector

GPU_RESOURCE = "nvidia.com/gpu"
# The taint the NVIDIA device plugin's docs (and EKS GPU node groups) put on GPU nodes.
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
# A Service's name is a DNS-1035 label: unlike a Job's, it must start with a letter.
SERVICE_NAME_PATTERN: Final = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


class UnrunnableTrainingError(ValueError):
    """The training's children cannot exist as specified (no retry can help): the training fails."""


def owner_reference(training: MnistTraining) -> dict[str, Any]:
    if not training.metadata.uid:
        raise ValueError(f"{training.metadata.namespace}/{training.metadata.name} has no uid")
    return {
        "apiVersion": training.api_version,
        "kind": training.kind,
        "name": training.metadata.name,
        "uid": training.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_trainer_job(
    training: MnistTraining, config: Config, base_model_claim: str | None = None
) -> dict[str, Any]:
    """The batch/v1 Job that runs one training; Kubernetes' Job controller does retries and deadlines.

    ``base_model_claim`` is the claim holding spec.baseModel: its own claimName, or the output claim of
    the training it names (which only the API server knows: ``Trainings`` looks it up)."""
    run_policy = training.spec.run_policy
    workers = training.spec.workers
    labels = child_labels(training)
    queue = kueue_labels(training)
    job_spec: dict[str, Any] = {
        "backoffLimit": job_backoff_limit(training),
        # A queued Job starts suspended and Kueue unsuspends it on admission (its webhook would suspend
        # it too; creating it so leaves no moment in which a pod could start unadmitted).
        "suspend": run_policy.suspend or bool(queue),
        "podFailurePolicy": pod_failure_policy(),
        "template": {
            "metadata": {"labels": labels},
            "spec": build_pod_spec(training, config, base_model_claim),
        },
    }
    if run_policy.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = run_policy.active_deadline_seconds
    if workers > 1:
        job_spec.update(
            {
                # One pod per worker, all at once (the workers wait for each other at the first step);
                # the Job controller gives each its index (JOB_COMPLETION_INDEX) and hostname <job>-<i>.
                "completions": workers,
                "parallelism": workers,
                "completionMode": "Indexed",
                # A replacement starts only once the pod it replaces is gone: two pods of one index
                # would both answer to the worker's DNS name.
                "podReplacementPolicy": "Failed",
            }
        )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(training),
            "namespace": training.metadata.namespace,
            "labels": {**labels, **queue},
            "ownerReferences": [owner_reference(training)],
        },
        "spec": job_spec,
    }


def job_backoff_limit(training: MnistTraining) -> int:
    """The Job's backoffLimit, which counts failed pods, for ``spec.runPolicy.backoffLimit``, which
    counts restarts of the training. When one of N workers fails, the others fail too (WorkerLost, once
    TensorFlow notices the lost peer), so one restart of the set costs up to N failed pods."""
    return training.spec.run_policy.backoff_limit * training.spec.workers


def build_worker_service(training: MnistTraining) -> dict[str, Any]:
    """The headless Service of a multi-worker training: it gives each worker pod the DNS name
    ``<job>-<index>.<job>.<namespace>.svc`` (``distribution.cluster_worker_hosts``). Built only for
    ``spec.workers > 1``; owned by the training, so the garbage collector removes it with the Job."""
    if training.spec.workers <= 1:
        raise ValueError("a single-worker training has no worker Service")
    name = job_name(training)
    if not SERVICE_NAME_PATTERN.fullmatch(name):
        raise UnrunnableTrainingError(
            f"a multi-worker training's name must start with a letter: its headless Service is named "
            f"{name!r} like its Job, and a Service name (DNS-1035 label) cannot start with a digit"
        )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": training.metadata.namespace,
            "labels": child_labels(training),
            "ownerReferences": [owner_reference(training)],
        },
        "spec": {
            "clusterIP": "None",
            # The workers look each other up while starting, long before any of them could be Ready
            # (a trainer pod has no readiness probe to pass until it runs): publish them at once.
            "publishNotReadyAddresses": True,
            "selector": worker_selector(training),
            "ports": [{"name": WORKER_PORT_NAME, "port": WORKER_PORT, "targetPort": WORKER_PORT_NAME}],
        },
    }


def pod_failure_policy() -> dict[str, Any]:
    """Exit codes a retry cannot fix fail the Job at once; evictions and preemptions are not failures."""
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": TRAINER_CONTAINER,
                    "operator": "In",
                    "values": codes_that_fail_at_once(),
                },
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
    }


def build_pod_spec(
    training: MnistTraining, config: Config, base_model_claim: str | None = None
) -> dict[str, Any]:
    spec = training.spec
    mounts = build_mounts(training, base_model_claim)
    tolerations = [t.model_dump(by_alias=True, exclude_none=True) for t in spec.tolerations]
    if spec.resources.gpus and GPU_TOLERATION not in tolerations:
        tolerations.append(dict(GPU_TOLERATION))
    pod: dict[str, Any] = {
        # Never: the Job controller makes a new pod per attempt, and podFailurePolicy requires it.
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": config.run_as_user,
            "runAsGroup": config.run_as_user,
            "fsGroup": config.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [build_trainer_container(training, config, mounts)],
        "volumes": mounts.volumes,
    }
    if config.trainer_service_account:
        pod["serviceAccountName"] = config.trainer_service_account
    if spec.workers > 1:
        pod["subdomain"] = job_name(training)  # the headless Service's name: DNS names for the workers
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if tolerations:
        pod["tolerations"] = tolerations
    return pod


def build_trainer_container(training: MnistTraining, config: Config, mounts: "Mounts") -> dict[str, Any]:
    workers = training.spec.workers
    meta = training.metadata
    hosts = cluster_worker_hosts(job_name(training), workers, meta.namespace) if workers > 1 else []
    container: dict[str, Any] = {
        "name": TRAINER_CONTAINER,
        "image": training.spec.image or config.trainer_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": list(config.trainer_command),
        "env": pod_env(training, default_pushgateway_url=config.pushgateway_url, worker_hosts=hosts),
        "resources": build_resources(training),
        "volumeMounts": mounts.volume_mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        # The trainer writes its failure reason there; the log tail is the fallback for a crash.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if workers > 1:
        container["ports"] = [{"name": WORKER_PORT_NAME, "containerPort": WORKER_PORT}]
    return container


def build_resources(training: MnistTraining) -> dict[str, dict[str, str]]:
    wanted = training.spec.resources
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if wanted.cpu:
        requests["cpu"] = wanted.cpu  # no CPU limit: CFS throttling slows training for nothing
    if wanted.memory:
        requests["memory"] = limits["memory"] = wanted.memory  # a clear OOMKilled beats node pressure
    if wanted.gpus:
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(wanted.gpus)
    resources: dict[str, dict[str, str]] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return resources


@dataclass(frozen=True)
class Mounts:
    """The pod's volumes and the trainer's mounts of them."""

    volumes: list[dict[str, Any]]
    volume_mounts: list[dict[str, Any]]


def build_mounts(training: MnistTraining, base_model_claim: str | None = None) -> Mounts:
    """The data cache and the output (emptyDirs when no claim is named), a scratch /tmp, and the claims
    the spec reads from, read-only. A claim named twice (a base model on the output claim, say) is one
    volume mounted twice: the pod then needs the claim attached once."""
    spec = training.spec
    wanted: list[tuple[str, str | None, str, bool]] = [
        ("data", spec.dataset.cache_claim_name, DATA_MOUNT_PATH, False),
        ("output", spec.output.claim_name, OUTPUT_MOUNT_PATH, False),
        ("base-model", base_model_claim, BASE_MODEL_MOUNT_PATH, True),
        ("dataset", spec.dataset.claim_name, DATASET_MOUNT_PATH, True),
        ("predict-input", spec.predict.claim_name if spec.predict else None, PREDICT_INPUT_MOUNT_PATH, True),
    ]
    volumes: list[dict[str, Any]] = []
    volume_mounts: list[dict[str, Any]] = []
    volume_of_claim: dict[str, str] = {}
    for name, claim, mount_path, read_only in wanted:
        if claim is None and read_only:
            continue  # an input the spec does not use
        volume = volume_of_claim.get(claim) if claim else None
        if volume is None:
            volume = name
            source = {"persistentVolumeClaim": {"claimName": claim}} if claim else {"emptyDir": {}}
            volumes.append({"name": name, **source})
            if claim:
                volume_of_claim[claim] = name
        mount: dict[str, Any] = {"name": volume, "mountPath": mount_path}
        if read_only:
            mount["readOnly"] = True
        volume_mounts.append(mount)
    # The root filesystem is read-only; TensorFlow and Keras need a scratch /tmp.
    volumes.append({"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}})
    volume_mounts.append({"name": "tmp", "mountPath": TMP_MOUNT_PATH})
    return Mounts(volumes, volume_mounts)

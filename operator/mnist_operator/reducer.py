"""The pure status reducer: (resource, Job, pods, pushed metrics) -> the resource's whole status.

Each condition is looked up by type, never by position, and keeps its lastTransitionTime while its status
does not change. Figures pushed by the trainer survive a Pushgateway that forgot them (a restart):
when no metrics are found the previous status' figures stay.

The status is built through the contract's ``MnistTrainingStatus`` (the model the CRD's schema is
generated from), by field name, and handed back as the API server stores it: camelCase aliases, no
``None``. A field the model does not have fails at once (``extra="forbid"``, at every level) instead of
being pruned without a word by the API server; keys of the previous status are read through the model's
aliases too.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mnist_api import Condition, ConditionType, MnistTraining, MnistTrainingStatus, Phase, describe_exit_code
from mnist_api.distribution import CHIEF_INDEX, COMPLETION_INDEX_ANNOTATION
from mnist_api.exit_codes import ExitCode
from mnist_api.layout import MODEL_KERAS_FILE, PREDICTIONS_DIR
from mnist_api.metrics import PREDICT_STAGE, TEST_STAGE, TRAIN_STAGE, metric_name
from mnist_api.spec import Task

from .naming import KUEUE_QUEUE_LABEL, TRAINER_CONTAINER, kueue_labels

FIGURE_DIGITS = 4
IMAGE_PULL_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
WAITING_PROBLEMS = IMAGE_PULL_REASONS | {
    "CreateContainerConfigError",
    "CreateContainerError",
    "CrashLoopBackOff",
}
# What a multi-worker training's survivors exit with when a peer is lost: a consequence, not a cause.
WORKER_LOST_REASON = describe_exit_code(ExitCode.WORKER_LOST).reason
# The keys the API server stores each field under, by field name; a name the model lacks is a KeyError.
_STATUS_KEYS = {name: field.alias or name for name, field in MnistTrainingStatus.model_fields.items()}
_CONDITION_KEYS = {name: field.alias or name for name, field in Condition.model_fields.items()}


@dataclass(frozen=True)
class MetricsView:
    """What the Pushgateway holds for one run: gauge values by metric name, or why there are none."""

    values: Mapping[str, float]
    reachable: bool = True
    error: str | None = None


@dataclass(frozen=True)
class Outcome:
    phase: Phase
    reason: str
    message: str


def queued_outcome(queue: str, workload: Mapping[str, Any] | None) -> Outcome:
    """Why a queued Job waits, in Kueue's words: its Workload's conditions."""
    where = f"LocalQueue {queue}"
    if workload is None:
        return Outcome(
            Phase.QUEUED,
            "WaitingForKueue",
            f"the Job waits, suspended, for Kueue to queue it in {where}; Kueue has made no Workload for it "
            "(is Kueue installed and managing batch/job?)",
        )
    conditions = workload.get("conditions") or {}
    reserved = conditions.get("QuotaReserved") or {}
    admitted = conditions.get("Admitted") or {}
    evicted = conditions.get("Evicted") or {}
    name = f"Workload {workload.get('name')}"
    if admitted.get("status") == "True":
        return Outcome(Phase.QUEUED, "Admitted", f"Kueue admitted {name} in {where}; the Job is starting")
    if reserved.get("status") == "True":
        waiting = admitted.get("message") or "its admission checks"
        return Outcome(Phase.QUEUED, "QuotaReserved", f"{name} holds quota in {where}, waiting for {waiting}")
    if evicted.get("status") == "True":
        return Outcome(
            Phase.QUEUED,
            _kueue_reason(evicted.get("reason"), "Evicted"),
            f"Kueue evicted {name} ({evicted.get('message') or 'no message'}); it waits in {where} again",
        )
    message = reserved.get("message") or "waiting for quota"
    return Outcome(
        Phase.QUEUED, _kueue_reason(reserved.get("reason"), "Pending"), f"{name} waits in {where}: {message}"
    )


def _kueue_reason(reason: str | None, default: str) -> str:
    """Kueue's reasons are CamelCase words already; anything else would not pass the schema's pattern."""
    return reason if reason and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", reason) else default


def reduce_status(  # noqa: PLR0917 - the reducer's inputs, in the design's order
    training: MnistTraining,
    job: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    metrics: MetricsView | None,
    previous: Mapping[str, Any] | None,
    now: str,
    workload: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``workload`` is Kueue's Workload of the Job (``state.workload_summary``) while the Job is queued."""
    previous = previous or {}
    task = training.spec.task
    workers = training.spec.workers
    outcome = job_outcome(job, pods, task, workload, workers=workers)
    # A multi-worker training's progress is logged by its chief: that is the pod kubectl logs wants.
    latest_pod = (
        _latest([p for p in pods if _worker_index(p) == CHIEF_INDEX] or pods)
        if workers > 1
        else _latest(pods)
    )
    fields: dict[str, Any] = {
        "phase": outcome.phase,
        "observed_generation": training.metadata.generation,
        "message": outcome.message,
    }
    fields.update(_figures(training, metrics, previous))
    if task == Task.TRAIN:
        # evaluate and predict runs have no epochs: the Epoch column stays empty rather than say 0/5.
        fields["epochs"] = training.spec.epochs
        fields["progress"] = f"{fields.get('epoch') or 0}/{training.spec.epochs}"
    if job is not None:
        job_status = job.get("status") or {}
        fields["job_name"] = job["metadata"]["name"]
        if workers > 1:
            fields["attempts"] = sum(
                int(job_status.get(key) or 0) for key in ("failed", "active", "succeeded")
            )
        else:
            fields["attempts"] = int(job_status.get("failed", 0)) + int(
                bool(job_status.get("active") or job_status.get("succeeded"))
            )
        fields["start_time"] = job_status.get("startTime")
        fields["completion_time"] = job_status.get("completionTime") or _condition_time(job, "Failed")
    if latest_pod is not None:
        fields["pod_name"] = latest_pod["metadata"]["name"]
    if workers > 1:
        fields.update(_worker_fields(workers, job, pods))
    claim = training.spec.output.claim_name
    if outcome.phase is Phase.SUCCEEDED and claim:
        meta = training.metadata
        run_dir = f"pvc://{claim}/{meta.namespace}/{meta.name}"
        if task == Task.TRAIN:
            fields["model_path"] = f"{run_dir}/{MODEL_KERAS_FILE}"
        elif task == Task.PREDICT:
            fields["predictions_path"] = f"{run_dir}/{PREDICTIONS_DIR}/"
    fields["conditions"] = _conditions(training, job, outcome, metrics, previous, now)
    return stored_status(fields)


def stored_status(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The status document the API server would store for ``fields`` (``MnistTrainingStatus`` field
    names, conditions as ``Condition`` field names): validated by the model, dumped as JSON values of its
    types (a float figure the API server handed back as ``1`` is ``1.0`` again) under the model's
    aliases, with ``None`` left out. A name the model lacks, at any level, raises ValidationError."""
    status = MnistTrainingStatus.model_validate(fields, extra="forbid", by_alias=False, by_name=True)
    document: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return document


SUCCESS_MESSAGES = {
    Task.TRAIN: "training, evaluation and export succeeded",
    Task.EVALUATE: "the evaluation of the base model succeeded",
    Task.PREDICT: "every image was predicted",
}
RUNNING_VERBS = {Task.TRAIN: "training", Task.EVALUATE: "evaluating", Task.PREDICT: "predicting"}


def job_outcome(
    job: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    task: Task = Task.TRAIN,
    workload: Mapping[str, Any] | None = None,
    *,
    workers: int = 1,
) -> Outcome:
    if job is None:
        return Outcome(Phase.PENDING, "JobNotCreated", "the trainer Job does not exist yet")
    if _job_condition(job, "Complete"):
        return Outcome(Phase.SUCCEEDED, "Completed", SUCCESS_MESSAGES[task])
    failed = _job_condition(job, "Failed")
    if failed:
        return Outcome(Phase.FAILED, *_failure(failed, pods, workers))
    if (job.get("spec") or {}).get("suspend"):
        queue = (job["metadata"].get("labels") or {}).get(KUEUE_QUEUE_LABEL)
        if queue:  # Kueue holds the Job until it admits its Workload: not the spec's doing
            return queued_outcome(queue, workload)
        return Outcome(Phase.SUSPENDED, "Suspended", "spec.runPolicy.suspend is true: no pod runs")
    if workers > 1:
        return _workers_outcome(job, pods, task, workers)
    latest = _latest(pods)
    if latest is not None:
        waiting = _trainer_state(latest).get("waiting") or {}
        if waiting.get("reason") in WAITING_PROBLEMS:
            return Outcome(Phase.PENDING, waiting["reason"], waiting.get("message") or waiting["reason"])
        # Pod phases (and the Job's condition types) are Kubernetes' strings, not our Phase.
        pod_phase = (latest.get("status") or {}).get("phase")
        if pod_phase == "Running":
            name = latest["metadata"]["name"]
            return Outcome(Phase.RUNNING, "TrainerRunning", f"pod {name} is {RUNNING_VERBS[task]}")
        if pod_phase == "Succeeded":
            # The pod is done before the Job controller marks the Job complete: not a step back.
            return Outcome(Phase.RUNNING, "TrainerFinished", "the trainer succeeded; the Job is completing")
    if (job.get("status") or {}).get("failed") or (latest is not None and _pod_phase(latest) == "Failed"):
        return Outcome(
            Phase.PENDING, "Retrying", _last_failure_message(pods) or "a failed attempt is retried"
        )
    return Outcome(Phase.PENDING, "PodPending", "waiting for the trainer pod to be scheduled and started")


def _failure(
    condition: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], workers: int = 1
) -> tuple[str, str]:
    reason = condition.get("reason") or "Failed"
    message = condition.get("message") or ""
    cause = _pod_failure_cause(pods) if workers == 1 else _worker_failure_cause(pods, workers)
    if reason in ("PodFailurePolicy", "BackoffLimitExceeded") and cause is not None:
        cause_reason, cause_message = cause
        prefix = "" if reason == "PodFailurePolicy" else "backoff limit reached; last attempt: "
        return cause_reason, prefix + cause_message
    if reason == "DeadlineExceeded":
        return "DeadlineExceeded", message or "spec.runPolicy.activeDeadlineSeconds passed"
    return reason, message or reason


def _pod_failure_cause(pods: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    for pod in sorted(pods, key=_created, reverse=True):
        cause = _failure_of(pod)
        if cause is not None:
            return cause
    return None


def _failure_of(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """Why this pod failed (reason, message), or None when it did not."""
    status = pod.get("status") or {}
    if status.get("reason") == "Evicted":
        return "Evicted", status.get("message") or "the pod was evicted"
    terminated = _trainer_state(pod).get("terminated")
    if terminated and terminated.get("exitCode", 0) != 0:
        if terminated.get("reason") == "OOMKilled":
            return "OOMKilled", "the trainer ran out of memory: raise spec.resources.memory"
        info = describe_exit_code(int(terminated["exitCode"]))
        detail = (terminated.get("message") or "").strip().splitlines()
        text = f"exit code {terminated['exitCode']}: {info.description}"
        return info.reason, text + (f" ({detail[-1]})" if detail else "")
    return None


@dataclass(frozen=True)
class WorkerFailure:
    index: int | None
    pod: str
    reason: str
    message: str

    def describe(self) -> str:
        worker = "a worker" if self.index is None else f"worker {self.index}"
        return f"{worker} (pod {self.pod}): {self.message}"


def _worker_failure(pods: Sequence[Mapping[str, Any]], workers: int) -> WorkerFailure | None:
    """The failure that last restarted a multi-worker training's workers.

    When one worker fails, its peers fail after it as WorkerLost (exit code 75) once TensorFlow notices:
    the latest failure is then a survivor's, which says nothing of the cause. So, newest first, the
    first failure of another kind is the cause, unless all N-1 survivors of a restart (and more) came
    first, which means the lost worker's own failure is unknown (its pod vanished with its node, say):
    then the latest failure stands for it."""
    failures = [(pod, cause) for pod in pods if (cause := _failure_of(pod)) is not None]
    failures.sort(key=lambda item: (_failed_at(item[0]), item[0]["metadata"]["name"]), reverse=True)
    chosen = next(iter(failures), None)
    for survivors_before, (pod, cause) in enumerate(failures):
        if survivors_before >= workers:
            break
        if cause[0] != WORKER_LOST_REASON:
            chosen = (pod, cause)
            break
    if chosen is None:
        return None
    pod, (reason, message) = chosen
    return WorkerFailure(_worker_index(pod), pod["metadata"]["name"], reason, message)


def _worker_failure_cause(pods: Sequence[Mapping[str, Any]], workers: int) -> tuple[str, str] | None:
    failure = _worker_failure(pods, workers)
    return (failure.reason, failure.describe()) if failure is not None else None


def _workers_outcome(
    job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], task: Task, workers: int
) -> Outcome:
    """A running multi-worker Job: it trains only while every worker runs, since each step waits for all
    of them. Each worker's latest pod is its current one (earlier ones failed and were replaced)."""
    current = _latest_by_index(pods)
    for index, pod in sorted(current.items()):
        waiting = _trainer_state(pod).get("waiting") or {}
        if waiting.get("reason") in WAITING_PROBLEMS:
            problem = waiting.get("message") or waiting["reason"]
            return Outcome(
                Phase.PENDING, waiting["reason"], f"worker {index} (pod {pod['metadata']['name']}): {problem}"
            )
    phases = [_pod_phase(current[index]) if index in current else None for index in range(workers)]
    if all(phase == "Running" for phase in phases):
        chief = current[CHIEF_INDEX]["metadata"]["name"]
        return Outcome(
            Phase.RUNNING,
            "TrainerRunning",
            f"{workers} workers are {RUNNING_VERBS[task]}; worker 0, the chief, is pod {chief}",
        )
    if "Succeeded" in phases and all(phase in ("Running", "Succeeded") for phase in phases):
        return Outcome(Phase.RUNNING, "TrainerFinished", "the workers succeeded; the Job is completing")
    if (job.get("status") or {}).get("failed") or "Failed" in phases:
        failure = _worker_failure(pods, workers)
        if failure is None:
            return Outcome(Phase.PENDING, "Retrying", "a failed attempt is retried")
        return Outcome(
            Phase.PENDING,
            "Retrying",
            f"retrying after {failure.reason} of {failure.describe()}; the workers restart together",
        )
    running = phases.count("Running")
    return Outcome(
        Phase.PENDING,
        "PodPending",
        f"waiting for the worker pods to be scheduled and started ({running} of {workers} running)",
    )


def _worker_fields(
    workers: int, job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    job_status = (job or {}).get("status") or {}
    ready = int(job_status.get("ready") or 0)
    failure = _worker_failure(pods, workers)
    return {
        "workers": workers,
        "workers_ready": ready,
        "workers_running": int(job_status.get("active") or 0),
        "worker_readiness": f"{ready}/{workers}",
        "failed_worker": failure.index if failure is not None else None,
    }


def _last_failure_message(pods: Sequence[Mapping[str, Any]]) -> str | None:
    cause = _pod_failure_cause(pods)
    return f"retrying after {cause[0]}: {cause[1]}" if cause else None


def _figures(
    training: MnistTraining, metrics: MetricsView | None, previous: Mapping[str, Any]
) -> dict[str, Any]:
    names = {
        "epoch": (TRAIN_STAGE, "epochs_count"),
        "accuracy": (TRAIN_STAGE, "accuracy"),
        "loss": (TRAIN_STAGE, "loss"),
        "val_accuracy": (TRAIN_STAGE, "val_accuracy"),
        "val_loss": (TRAIN_STAGE, "val_loss"),
        "elapsed_seconds": (TRAIN_STAGE, "elapsed_time_seconds"),
        "model_parameters": (TRAIN_STAGE, "model_parameters_count"),
        "test_accuracy": (TEST_STAGE, "accuracy"),
        "test_loss": (TEST_STAGE, "loss"),
        "predicted_images": (PREDICT_STAGE, "images"),
    }
    prefix = training.spec.metrics.prefix
    values = metrics.values if metrics is not None else {}
    figures: dict[str, Any] = {}
    for field, (stage, name) in names.items():
        value = values.get(metric_name(prefix, stage, name))
        if value is None:
            figures[field] = previous.get(_STATUS_KEYS[field])
        elif field in ("epoch", "model_parameters", "predicted_images"):
            figures[field] = int(value)
        else:
            figures[field] = round(float(value), 1 if field == "elapsed_seconds" else FIGURE_DIGITS)
    return figures


def _conditions(  # noqa: PLR0917
    training: MnistTraining,
    job: Mapping[str, Any] | None,
    outcome: Outcome,
    metrics: MetricsView | None,
    previous: Mapping[str, Any],
    now: str,
) -> list[dict[str, Any]]:
    phase = outcome.phase
    wanted: list[tuple[ConditionType, bool, str, str]] = [
        (
            ConditionType.CREATED,
            job is not None,
            "JobCreated" if job is not None else "JobNotCreated",
            f"Job {job['metadata']['name']}" if job is not None else "waiting for the Job to be created",
        ),
        (ConditionType.RUNNING, phase is Phase.RUNNING, outcome.reason, outcome.message),
        (ConditionType.SUCCEEDED, phase is Phase.SUCCEEDED, outcome.reason, outcome.message),
        (ConditionType.FAILED, phase is Phase.FAILED, outcome.reason, outcome.message),
        (ConditionType.SUSPENDED, phase is Phase.SUSPENDED, outcome.reason, outcome.message),
    ]
    if kueue_labels(training):  # only a training that names a queue can be queued
        wanted.append((ConditionType.QUEUED, phase is Phase.QUEUED, outcome.reason, outcome.message))
    if metrics is not None:
        if not metrics.reachable:
            wanted.append(
                (
                    ConditionType.METRICS_AVAILABLE,
                    False,
                    "PushgatewayUnreachable",
                    metrics.error or "unreachable",
                )
            )
        elif metrics.values:
            wanted.append(
                (ConditionType.METRICS_AVAILABLE, True, "MetricsFound", "the trainer's metrics are in")
            )
        else:
            wanted.append((ConditionType.METRICS_AVAILABLE, False, "NoMetricsYet", "nothing pushed yet"))
    if training.spec.output.claim_name:
        wanted.append(
            (ConditionType.MODEL_PERSISTENT, True, "PersistentVolumeClaim", training.spec.output.claim_name)
        )
    else:
        wanted.append(
            (
                ConditionType.MODEL_PERSISTENT,
                False,
                "EmptyDirOutput",
                "spec.output.claimName is unset: the model is written to an emptyDir and lost with the pod",
            )
        )
    type_key, status_key, time_key = (_CONDITION_KEYS[k] for k in ("type", "status", "last_transition_time"))
    before = {c.get(type_key): c for c in previous.get(_STATUS_KEYS["conditions"]) or []}
    conditions = []
    for kind, is_true, reason, message in wanted:
        status = "True" if is_true else "False"
        old = before.get(str(kind)) or {}
        changed = old.get(status_key) != status
        conditions.append(
            {
                "type": str(kind),
                "status": status,
                "reason": reason
                if is_true or kind in _EXPLAINED_WHEN_FALSE
                else _NOT_YET[ConditionType(kind)],
                "message": message if is_true or kind in _EXPLAINED_WHEN_FALSE else "",
                "last_transition_time": now if changed or not old.get(time_key) else old[time_key],
                "observed_generation": training.metadata.generation,
            }
        )
    return conditions


_EXPLAINED_WHEN_FALSE = {
    ConditionType.CREATED,
    ConditionType.METRICS_AVAILABLE,
    ConditionType.MODEL_PERSISTENT,
}
_NOT_YET = {
    ConditionType.RUNNING: "NotRunning",
    ConditionType.SUCCEEDED: "NotSucceeded",
    ConditionType.FAILED: "NotFailed",
    ConditionType.SUSPENDED: "NotSuspended",
    ConditionType.QUEUED: "NotQueued",
}


def _job_condition(job: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition  # type: ignore[no-any-return]
    return None


def _condition_time(job: Mapping[str, Any], kind: str) -> str | None:
    condition = _job_condition(job, kind)
    return condition.get("lastTransitionTime") if condition else None


def _trainer_state(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") == TRAINER_CONTAINER:
            state: Mapping[str, Any] = container.get("state") or {}
            return state
    return {}


def _pod_phase(pod: Mapping[str, Any]) -> str | None:
    phase: str | None = (pod.get("status") or {}).get("phase")
    return phase


def _created(pod: Mapping[str, Any]) -> str:
    return str(pod["metadata"].get("creationTimestamp") or "")


def _latest(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return max(pods, key=lambda p: (_created(p), p["metadata"]["name"]), default=None)


def _worker_index(pod: Mapping[str, Any]) -> int | None:
    """The pod's worker index: its completion index, which the Job controller annotates it with."""
    text = str((pod["metadata"].get("annotations") or {}).get(COMPLETION_INDEX_ANNOTATION, ""))
    return int(text) if text.isdigit() else None


def _latest_by_index(pods: Sequence[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    by_index: dict[int, list[Mapping[str, Any]]] = {}
    for pod in pods:
        index = _worker_index(pod)
        if index is not None:
            by_index.setdefault(index, []).append(pod)
    return {index: latest for index, group in by_index.items() if (latest := _latest(group)) is not None}


def _failed_at(pod: Mapping[str, Any]) -> str:
    """When the pod failed: its trainer's finish time (RFC 3339 UTC, so text order is time order), else
    its creation time (an evicted pod may have no terminated container)."""
    terminated = _trainer_state(pod).get("terminated") or {}
    return str(terminated.get("finishedAt") or _created(pod))

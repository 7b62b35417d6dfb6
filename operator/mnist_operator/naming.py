"""Deterministic names and labels of a training's children, so every reconcile finds what it made."""

import hashlib
from typing import Final

from mnist_api import MnistTraining
from mnist_api.resource import GROUP

MAX_NAME: Final = 63  # Job names become label values, which are limited to 63 characters
LABEL_NAME: Final = f"{GROUP}/name"
LABEL_UID: Final = f"{GROUP}/uid"
MANAGED_BY: Final = "app.kubernetes.io/managed-by"
OPERATOR_NAME: Final = "mnist-operator"
TRAINER_CONTAINER: Final = "trainer"
# Kueue's labels of a workload object (https://kueue.sigs.k8s.io/docs/tasks/run/jobs/): a training that
# carries them hands them to its Job, which Kueue then queues and admits like any labelled Job.
KUEUE_QUEUE_LABEL: Final = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_LABEL: Final = "kueue.x-k8s.io/priority-class"


def child_name(parent: str, suffix: str, limit: int = MAX_NAME) -> str:
    """``<parent>-<suffix>``, shortened with a stable hash when it would pass ``limit`` characters."""
    name = f"{parent}-{suffix}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(parent.encode()).hexdigest()[:6]
    keep = limit - len(suffix) - len(digest) - 2
    return f"{parent[:keep].rstrip('-')}-{digest}-{suffix}"


def job_name(training: MnistTraining) -> str:
    """The trainer Job's name; a multi-worker training's headless Service has the same one.

    The Job controller names each pod of an Indexed Job's host ``<job>-<index>``, which must be a DNS label
    (63 characters) too, so a multi-worker Job's name leaves room for its largest index."""
    workers = training.spec.workers
    index_room = len(f"-{workers - 1}") if workers > 1 else 0
    return child_name(training.metadata.name, "trainer", MAX_NAME - index_room)


def worker_selector(training: MnistTraining) -> dict[str, str]:
    """Labels that select this very training's pods: the name alone would also select the pods of a
    deleted training of the same name that the garbage collector has not removed yet."""
    if not training.metadata.uid:
        raise ValueError(f"{training.metadata.namespace}/{training.metadata.name} has no uid")
    return {LABEL_NAME: training.metadata.name, LABEL_UID: training.metadata.uid}


def child_labels(training: MnistTraining) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "mnist-trainer",
        "app.kubernetes.io/instance": training.metadata.name,
        "app.kubernetes.io/component": "trainer",
        MANAGED_BY: OPERATOR_NAME,
        LABEL_NAME: training.metadata.name,
    }
    if training.metadata.uid:
        labels[LABEL_UID] = training.metadata.uid
    return labels


def kueue_labels(training: MnistTraining) -> dict[str, str]:
    """The training's Kueue labels, for its Job: empty unless it names a LocalQueue."""
    labels = training.metadata.labels
    if KUEUE_QUEUE_LABEL not in labels:
        return {}
    return {key: labels[key] for key in (KUEUE_QUEUE_LABEL, KUEUE_PRIORITY_LABEL) if key in labels}

"""What the operator knows of each training: the resource, its Job and pods (kept from the watch streams,
so reflecting status costs no extra API reads), and the status it last wrote."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mnist_api import MnistTraining, validate_resource
from mnist_api.distribution import COMPLETION_INDEX_ANNOTATION

from .naming import KUEUE_QUEUE_LABEL, LABEL_NAME, LABEL_UID

Key = tuple[str, str]  # namespace, name
ChildKind = Literal["job", "pod"]


@dataclass
class Tracked:
    training: MnistTraining | None = None
    job: dict[str, Any] | None = None
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    written_status: dict[str, Any] | None = None
    workload: dict[str, Any] | None = None
    """Kueue's Workload of the Job (``workload_summary``), while the Job waits in a queue."""
    created_job: str | None = None
    """The Job this operator created for the training, until an Event has said so: the status writer
    tells it together with the training's first status, in one Event instead of two."""
    waiting: str | None = None
    """Why the Job is not created yet (its base model is still training), as the create handler wrote it
    to the status; the status writer leaves that status alone until the Job exists."""


class Store:
    def __init__(self) -> None:
        self._entries: dict[Key, Tracked] = {}

    def get(self, key: Key) -> Tracked | None:
        return self._entries.get(key)

    def keys(self) -> list[Key]:
        return list(self._entries)

    def update_training(self, body: Mapping[str, Any], training: MnistTraining | None = None) -> Key:
        """Record the resource; ``training`` is ``body`` validated already, when the caller has it."""
        training = training or validate_training(body)
        key = (training.metadata.namespace, training.metadata.name)
        entry = self._entries.setdefault(key, Tracked())
        if entry.training is not None and entry.training.metadata.uid != training.metadata.uid:
            self._entries[key] = entry = Tracked()  # a new resource reusing the name
        entry.training = training
        if entry.written_status is None:
            entry.written_status = dict(body.get("status") or {})
        return key

    def known(self, body: Mapping[str, Any]) -> MnistTraining | None:
        """The validated training recorded for ``body`` when nothing the contract reads has changed
        since (``unchanged``): validating a real API server's body costs about a millisecond, and every
        new training's first event and its create handler bring the same body."""
        entry = self._entries.get(training_key(body))
        return entry.training if entry is not None and self.unchanged(body) else None

    def unchanged(self, body: Mapping[str, Any]) -> bool:
        """Whether ``body`` holds nothing new for the reducer: the same object (uid) with the same spec
        (generation, which the API server bumps on every spec change and on deletion). Most MODIFIED
        events of a training are such: the echoes of our own status writes and of kopf's bookkeeping."""
        metadata = body.get("metadata") or {}
        entry = self._entries.get(training_key(body))
        if entry is None or entry.training is None:
            return False
        known = entry.training.metadata
        generation = metadata.get("generation")
        return (
            generation is not None
            and generation == known.generation
            and metadata.get("uid") == known.uid
            and not metadata.get("deletionTimestamp")
        )

    def forget(self, key: Key) -> None:
        self._entries.pop(key, None)

    def queued(self) -> dict[tuple[str, str], Key]:
        """The trainings whose Job waits for Kueue (suspended, with a queue label), by (namespace, Job)."""
        waiting = {}
        for key, entry in self._entries.items():
            job = entry.job
            if entry.training is None or job is None or not (job.get("spec") or {}).get("suspend"):
                continue
            if KUEUE_QUEUE_LABEL in job["metadata"].get("labels", {}):
                waiting[(key[0], job["metadata"]["name"])] = key
        return waiting

    def drop_workloads_except(self, keys: set[Key]) -> None:
        """Forget the Workloads of trainings no longer queued (admitted, finished, deleted)."""
        for key, entry in self._entries.items():
            if key not in keys:
                entry.workload = None

    def set_workload(self, key: Key, workload: dict[str, Any] | None) -> bool:
        """Record the Workload Kueue keeps for the training's Job; whether that changed anything."""
        entry = self._entries.get(key)
        if entry is None or entry.workload == workload:
            return False
        entry.workload = workload
        return True

    def update_child(self, kind: ChildKind, event_type: str | None, body: Mapping[str, Any]) -> Key | None:
        """Record a Job or pod event, ``body`` being the watch's summary of the object (``job_summary``,
        ``pod_summary``: children.py reduces each event as it arrives); returns the training it belongs
        to, if known by label."""
        metadata = body.get("metadata") or {}
        parent = (metadata.get("labels") or {}).get(LABEL_NAME)
        if not parent:
            return None
        key = (metadata.get("namespace") or "default", parent)
        entry = self._entries.setdefault(key, Tracked())
        if entry.training is not None and not _owned_by(body, entry.training.metadata.uid):
            return None  # a leftover of a deleted resource of the same name
        deleted = event_type == "DELETED"
        if kind == "job":
            entry.job = None if deleted else dict(body)
        elif deleted:
            entry.pods.pop(metadata["name"], None)
        else:
            entry.pods[metadata["name"]] = dict(body)
        return key


# Only what the status reducer reads is kept of children (and what finds their training). A Job or pod
# from a real API server carries its whole pod template or spec and managedFields; kept whole, those
# copies were a large share of the operator's memory at 1,000 trainings (docs/benchmarks.md, section 5).
# The watches (children.py) reduce each event to this as it arrives.
def job_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    """A Job's identity, whether it is suspended, and its status."""
    spec = body.get("spec") or {}
    return {
        "metadata": _identity(body),
        "spec": {"suspend": spec.get("suspend")},
        "status": plain(body.get("status") or {}),
    }


# The Workload conditions that say why a queued Job waits (kueue.x-k8s.io Workload status).
WORKLOAD_CONDITIONS = ("QuotaReserved", "Admitted", "Evicted")


def workload_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    """A Kueue Workload: the Job it stands for, its queue, and the conditions that explain a wait."""
    metadata = body.get("metadata") or {}
    owners = [ref for ref in metadata.get("ownerReferences") or [] if ref.get("kind") == "Job"]
    conditions = {
        condition["type"]: {
            "status": condition.get("status"),
            "reason": condition.get("reason") or "",
            "message": condition.get("message") or "",
        }
        for condition in (body.get("status") or {}).get("conditions") or []
        if condition.get("type") in WORKLOAD_CONDITIONS
    }
    return {
        "name": metadata.get("name"),
        "job": owners[0].get("name") if owners else None,
        "queue": (body.get("spec") or {}).get("queueName"),
        "conditions": conditions,
    }


def pod_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    """A pod's identity, creation time (which attempt is the latest), worker index (the completion index
    of an Indexed Job's pod) and status."""
    metadata = body.get("metadata") or {}
    identity = _identity(body)
    identity["creationTimestamp"] = metadata.get("creationTimestamp")
    annotations = metadata.get("annotations") or {}
    if COMPLETION_INDEX_ANNOTATION in annotations:
        identity["annotations"] = {COMPLETION_INDEX_ANNOTATION: annotations[COMPLETION_INDEX_ANNOTATION]}
    return {"metadata": identity, "status": plain(body.get("status") or {})}


def _identity(body: Mapping[str, Any]) -> dict[str, Any]:
    metadata = body.get("metadata") or {}
    labels = metadata.get("labels") or {}
    return {
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "labels": {key: labels[key] for key in (LABEL_NAME, LABEL_UID, KUEUE_QUEUE_LABEL) if key in labels},
    }


def training_key(body: Mapping[str, Any]) -> Key:
    """The Store's key of an MnistTraining body, before (or without) validating it."""
    metadata = body.get("metadata") or {}
    return (metadata.get("namespace") or "default", metadata.get("name") or "")


def validate_training(body: Mapping[str, Any]) -> MnistTraining:
    """The resource as the contract reads it. Left out: managedFields and annotations (kopf's bookkeeping
    among them), which nothing reads, and the status, which the operator itself writes (it keeps its own
    copy). Kept whole, they made each tracked training cost about 36 KiB of validated model on a real
    API server."""
    metadata = body.get("metadata") or {}
    view = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: v for k, v in metadata.items() if k not in ("managedFields", "annotations")},
        "spec": body.get("spec") or {},
    }
    return validate_resource(plain(view))


def _owned_by(body: Mapping[str, Any], uid: str | None) -> bool:
    labels = (body.get("metadata") or {}).get("labels") or {}
    return uid is None or labels.get(LABEL_UID) in (None, uid)


def plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy as plain dicts and lists: kopf's bodies are read-only views, pydantic wants JSON."""
    return {key: _plain_value(value) for key, value in body.items()}


def _plain_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return plain(value)
    if isinstance(value, list | tuple):
        return [_plain_value(item) for item in value]
    return value

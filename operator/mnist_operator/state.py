"""What the operator knows of each training: the resource, its Job and pods (kept from the watch streams,
so reflecting status costs no extra API reads), and the status it last wrote."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mnist_api import MnistTraining, validate_resource

from .naming import LABEL_NAME, LABEL_UID

Key = tuple[str, str]  # namespace, name
ChildKind = Literal["job", "pod"]


@dataclass
class Tracked:
    training: MnistTraining | None = None
    job: dict[str, Any] | None = None
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    written_status: dict[str, Any] | None = None


class Store:
    def __init__(self) -> None:
        self._entries: dict[Key, Tracked] = {}

    def get(self, key: Key) -> Tracked | None:
        return self._entries.get(key)

    def keys(self) -> list[Key]:
        return list(self._entries)

    def update_training(self, body: Mapping[str, Any]) -> Key:
        training = validate_training(body)
        key = (training.metadata.namespace, training.metadata.name)
        entry = self._entries.setdefault(key, Tracked())
        if entry.training is not None and entry.training.metadata.uid != training.metadata.uid:
            self._entries[key] = entry = Tracked()  # a new resource reusing the name
        entry.training = training
        if entry.written_status is None:
            entry.written_status = dict(body.get("status") or {})
        return key

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


def pod_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    """A pod's identity, creation time (which attempt is the latest) and status."""
    identity = _identity(body)
    identity["creationTimestamp"] = (body.get("metadata") or {}).get("creationTimestamp")
    return {"metadata": identity, "status": plain(body.get("status") or {})}


def _identity(body: Mapping[str, Any]) -> dict[str, Any]:
    metadata = body.get("metadata") or {}
    labels = metadata.get("labels") or {}
    return {
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "labels": {key: labels[key] for key in (LABEL_NAME, LABEL_UID) if key in labels},
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

"""Creating and forgetting trainings: each new resource gets its Job (and, with several workers, the
headless Service that names them), edits it can honour reach the Job, a deleted one takes its metrics
along, and a finished one goes after its TTL."""

import datetime
from collections.abc import Mapping
from typing import Any

from mnist_api import MnistTraining, Phase
from mnist_api.spec import ExportFormat, Task

from . import opmetrics
from .builders import UnrunnableTrainingError, build_trainer_job, build_worker_service
from .config import Config
from .kube import Kube
from .naming import KUEUE_QUEUE_LABEL, job_name, kueue_labels
from .pollers import Pollers
from .priority import CreationsFirst
from .reducer import stored_status
from .state import ChildKind, Key, Store, training_key, validate_training
from .status_writer import FINAL_PHASES, EventPoster, StatusWriter


class JobTakenError(Exception):
    """A Job (or worker Service) of the training's name belongs to another resource (a deleted one of the
    same name, not yet garbage-collected): try again shortly."""


class BaseModelNotReadyError(Exception):
    """spec.baseModel names a training that has not succeeded yet: try again later."""


class BaseModelUnusableError(Exception):
    """spec.baseModel names a training whose model can never be read: the training fails."""


class Trainings:
    def __init__(
        self,
        config: Config,
        kube: Kube,
        store: Store,
        *,
        status: StatusWriter,
        pollers: Pollers,
        post_event: EventPoster,
        creations: CreationsFirst,
    ) -> None:
        self.config = config
        self.kube = kube
        self.store = store
        self.status = status
        self.pollers = pollers
        self.post_event = post_event
        self.creations = creations

    async def ensure_job(self, body: Mapping[str, Any]) -> str:
        """Create the training's Job unless it exists; idempotent across operator restarts. A multi-worker
        training's headless Service comes first: its workers look each other up as soon as they start."""
        training = self.store.known(body) or validate_training(body)
        try:
            claim = await self.base_model_claim(training)
            service = build_worker_service(training) if training.spec.workers > 1 else None
        except (BaseModelNotReadyError, BaseModelUnusableError, UnrunnableTrainingError) as error:
            final = not isinstance(error, BaseModelNotReadyError)
            phase = Phase.FAILED if final else Phase.PENDING
            meta = training.metadata
            await self.kube.patch_training_status(
                meta.namespace,
                meta.name,
                stored_status(
                    {"phase": phase, "message": str(error), "observed_generation": meta.generation}
                ),
            )
            if not final:  # the reducer would say only "the Job does not exist yet" over it
                waiting = self.store.get(self.store.update_training(body, training))
                if waiting is not None:
                    waiting.waiting = str(error)
            raise
        async with self.creations.creating():
            if service is not None:
                service, _ = await self.kube.create_service(service)
                _check_owner(training, "Service", service)
            job, created = await self.kube.create_job(build_trainer_job(training, self.config, claim))
        _check_owner(training, "Job", job)
        name = str(job["metadata"]["name"])
        # The status follows from the Job's own watch event; writing it here too would only race kopf's
        # bookkeeping patch of the same object. (Nor would handing it to kopf, whose patch would carry
        # it: with a status subresource kopf sends the status as a request of its own, after the
        # body's, in the handler's time.)
        entry = self.store.get(self.store.update_training(body, training))
        if entry is not None:
            entry.waiting = None
        if created:
            opmetrics.TRAININGS_CREATED.inc()
            if entry is not None and not entry.written_status:
                entry.created_job = name  # said with the first status (status_writer.py)
            else:  # that status is written already: say it now
                self.post_event(body, "Normal", "JobCreated", f"created Job {name}")
        self.pollers.watch(training)
        return name

    async def base_model_claim(self, training: MnistTraining) -> str | None:
        """The claim holding spec.baseModel; for a named training, its output claim once it succeeded."""
        source = training.spec.base_model
        if source is None or source.claim_name is not None:
            return source.claim_name if source else None
        assert source.training is not None
        namespace = training.metadata.namespace
        what = f"baseModel.training {source.training}"
        body = await self.kube.read_training(namespace, source.training)
        if body is None:
            raise BaseModelNotReadyError(f"waiting for {what}: there is no such MnistTraining in {namespace}")
        referenced = validate_training(body)
        if referenced.spec.task != Task.TRAIN:
            raise BaseModelUnusableError(f"{what} is a {referenced.spec.task} run: it produced no model")
        claim = referenced.spec.output.claim_name
        if claim is None:
            raise BaseModelUnusableError(
                f"{what} kept its model in an emptyDir, lost with its pod: it needs output.claimName"
            )
        if ExportFormat.KERAS not in referenced.spec.output.formats:
            raise BaseModelUnusableError(f"{what} does not export model.keras (output.formats)")
        phase = (body.get("status") or {}).get("phase")
        if phase == Phase.FAILED:
            raise BaseModelUnusableError(f"{what} failed: it has no model to start from")
        if phase != Phase.SUCCEEDED:
            raise BaseModelNotReadyError(f"waiting for {what} to succeed (it is {phase or 'Pending'})")
        return claim

    async def set_suspended(self, body: Mapping[str, Any], suspend: bool) -> None:
        training = validate_training(body)
        queue = kueue_labels(training).get(KUEUE_QUEUE_LABEL)
        if queue:
            # Kueue owns a queued Job's suspend (it would undo ours on its next reconcile); it stops an
            # admitted Workload when told so on the Workload itself.
            self.post_event(
                body,
                "Warning",
                "SuspendIgnored",
                f"spec.runPolicy.suspend is not applied to a training in Kueue's LocalQueue {queue}: "
                "deactivate its Workload instead (kubectl patch workload <name> --type merge "
                '-p \'{"spec":{"active":false}}\')',
            )
            return
        await self.kube.patch_job_suspend(training.metadata.namespace, job_name(training), suspend)

    async def training_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        if event_type == "DELETED":
            await self.forget(body)
            return
        if event_type == "MODIFIED" and self.store.unchanged(body):
            # Validating and reducing again would find what we wrote: on a real API server these echoes
            # are most of the operator's events (docs/benchmarks.md).
            return
        key = self.store.update_training(body)
        entry = self.store.get(key)
        if entry is None or entry.training is None:
            return
        self.pollers.watch(entry.training)
        if entry.job is None and not entry.written_status:
            # A brand-new resource: its first status comes with its Job's first event. Writing "no Job
            # yet" here would queue a PATCH in front of the Job's creation and race kopf's bookkeeping
            # patch of the same object (much slower creates at scale: docs/benchmarks.md).
            return
        self.status.request_refresh(key)

    def child_event(self, kind: ChildKind, event_type: str | None, body: Mapping[str, Any]) -> None:
        key = self.store.update_child(kind, event_type, body)
        if key is not None:
            self.status.request_refresh(key)

    async def forget(self, body: Mapping[str, Any]) -> None:
        """The resource is gone: its children go by garbage collection, its metrics we delete here."""
        key = training_key(body)
        self.store.forget(key)
        self.status.forget(key)
        await self.pollers.delete_metrics(body, key)

    def trainings_on(self, url: str) -> set[Key]:
        """Every training whose figures come from the Pushgateway at ``url``."""
        return {
            key
            for key in self.store.keys()  # noqa: SIM118 - Store is not a dict
            if (entry := self.store.get(key)) is not None
            and entry.training is not None
            and self.pollers.url_for(entry.training) == url
        }

    async def expire_if_due(self, body: Mapping[str, Any]) -> bool:
        """Delete a finished training once ``spec.runPolicy.ttlSecondsAfterFinished`` has passed."""
        training = validate_training(body)
        ttl = training.spec.run_policy.ttl_seconds_after_finished
        status = body.get("status") or {}
        finished = status.get("completionTime")
        uid = training.metadata.uid
        if ttl is None or status.get("phase") not in FINAL_PHASES or not finished or not uid:
            return False
        done = datetime.datetime.fromisoformat(str(finished).replace("Z", "+00:00"))
        if datetime.datetime.now(datetime.UTC) < done + datetime.timedelta(seconds=ttl):
            return False
        await self.kube.delete_training(training.metadata.namespace, training.metadata.name, uid)
        return True


def _check_owner(training: MnistTraining, kind: str, child: Mapping[str, Any]) -> None:
    """A child found under the training's name is ours only if the training owns it."""
    owners = [ref.get("uid") for ref in child["metadata"].get("ownerReferences") or []]
    if training.metadata.uid not in owners:
        raise JobTakenError(
            f"{kind} {child['metadata']['name']} exists but belongs to another resource (uid {owners}); "
            "it will be garbage-collected, retrying"
        )

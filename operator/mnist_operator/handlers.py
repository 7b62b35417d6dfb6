"""kopf handler registration only: every handler delegates to ``reconcile.Operator``; the startup
handler also starts the watches of Jobs and pods (``children``), which run outside kopf.

Run with ``kopf run -m mnist_operator.handlers --standalone --all-namespaces`` or ``mnist-operator run``.
"""

import logging
import os
import socket
from typing import Any

import kopf
from prometheus_client import start_http_server

from mnist_api.resource import GROUP, PLURAL, VERSION

from . import opmetrics
from .builders import UnrunnableTrainingError
from .children import ChildWatches
from .config import Config
from .diffbase import LeanAnnotationsDiffBaseStorage
from .events import EventRecorder
from .kube import Kube, make_api_client
from .naming import MANAGED_BY, OPERATOR_NAME
from .reconcile import Operator
from .trainings import BaseModelNotReadyError, BaseModelUnusableError, JobTakenError

CHILDREN_SELECTOR = f"{MANAGED_BY}={OPERATOR_NAME}"
JOB_TAKEN_RETRY_SECONDS = 10  # background deletion of the old Job usually takes a few seconds
BASE_MODEL_RETRY_SECONDS = 15  # a training's base model comes from another training, minutes away


class QuietEventHandler(logging.Filter):
    """Drops kopf's "Handler 'training_event' succeeded." lines. kopf logs every handler's success at
    INFO; for an ``on.event`` handler that is a line per watch event of every training (three for each
    new one, one per status write), without even the training's name. In a burst of creations those
    lines take a measurable share of the event loop (``bench.operator_scale --profile``) while Jobs wait.
    The handler's failures are still logged, as are the create handler's lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Handler 'training_event' succeeded."


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = Config.from_env(os.environ)
    settings.watching.server_timeout = config.watch_timeout_seconds
    settings.watching.client_timeout = config.watch_timeout_seconds + 30
    settings.watching.connect_timeout = 30
    # Keep kopf's bookkeeping in annotations: the status belongs to the MnistTraining schema.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = LeanAnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING  # our own transition Events say what happened
    objects_log = logging.getLogger("kopf.objects")
    if not any(isinstance(f, QuietEventHandler) for f in objects_log.filters):
        objects_log.addFilter(QuietEventHandler())
    # Watching named namespaces (the chart's namespaced RBAC) needs no list of all namespaces, which that
    # RBAC rightly does not grant: without this, kopf asks for it nine times at start-up, logging a 403
    # error each time, before it falls back to the names it was given.
    settings.scanning.disabled = bool(config.namespaces)
    if config.metrics_port:
        start_http_server(config.metrics_port, registry=opmetrics.REGISTRY)
    kube = Kube(make_api_client())
    memo.events = EventRecorder(kube, component=OPERATOR_NAME, instance=socket.gethostname())
    memo.operator = operator = Operator(config, kube, memo.events)
    operator.start()
    # Jobs and pods are watched outside kopf (children.py), selected by label on the server, each event
    # reduced to a summary as it arrives; their own client keeps the long-lived watch connections apart.
    memo.children = ChildWatches(
        make_api_client(),
        operator.child_event,
        label_selector=CHILDREN_SELECTOR,
        namespaces=config.namespaces,
        server_timeout_seconds=config.watch_timeout_seconds,
    )
    memo.children.start()


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster first, then the file KUBECONFIG names *now*: the kubernetes client's own loader reads
    KUBECONFIG once, when it is imported, and would miss a value set later."""
    return kopf.login_with_service_account(settings=settings, **kwargs) or kopf.login_with_kubeconfig(
        settings=settings, **kwargs
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    if hasattr(memo, "children"):
        await memo.children.stop()
    if hasattr(memo, "operator"):
        await memo.operator.stop()
    if hasattr(memo, "events"):
        await memo.events.flush()


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
async def ensure_job(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    # Returns nothing: kopf would store a result under .status, which belongs to our schema.
    try:
        await memo.operator.ensure_job(body)
    except JobTakenError as error:
        raise kopf.TemporaryError(str(error), delay=JOB_TAKEN_RETRY_SECONDS) from error
    except BaseModelNotReadyError as error:
        raise kopf.TemporaryError(str(error), delay=BASE_MODEL_RETRY_SECONDS) from error
    except (BaseModelUnusableError, UnrunnableTrainingError) as error:
        raise kopf.PermanentError(str(error)) from error


# on.update, not on.field: a field handler also runs on creation, as a second handler after ensure_job,
# which costs every new training an extra bookkeeping patch (and the watch event it causes).
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec.runPolicy.suspend")
async def suspend_changed(body: kopf.Body, new: Any, memo: kopf.Memo, **_: Any) -> None:
    await memo.operator.set_suspended(body, bool(new))


@kopf.on.event(GROUP, VERSION, PLURAL)
async def training_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await memo.operator.training_event(event.get("type"), body)


def _has_ttl(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("runPolicy", {}).get("ttlSecondsAfterFinished") is not None


@kopf.timer(GROUP, VERSION, PLURAL, interval=5, when=_has_ttl)
async def expire_finished(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await memo.operator.expire_if_due(body)

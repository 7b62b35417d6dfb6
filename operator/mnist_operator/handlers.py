"""kopf handler registration only: every handler delegates to ``reconcile.Operator``.

Run with ``kopf run -m mnist_operator.handlers --standalone --all-namespaces`` or ``mnist-operator run``.
"""

import logging
import os
from collections.abc import Mapping
from typing import Any, cast

import kopf
from prometheus_client import start_http_server

from mnist_api.resource import GROUP, PLURAL, VERSION

from . import opmetrics
from .config import Config
from .diffbase import LeanAnnotationsDiffBaseStorage
from .kube import Kube, make_api_client
from .naming import MANAGED_BY, OPERATOR_NAME
from .reconcile import Operator

CHILDREN = {MANAGED_BY: OPERATOR_NAME}
CHILDREN_SELECTOR = f"{MANAGED_BY}={OPERATOR_NAME}"
CHILD_RESOURCES = (("batch", "v1", "jobs"), ("", "v1", "pods"))
log = logging.getLogger(__name__)


def _post_event(body: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
    try:
        kopf.event(
            kopf.Body(cast(kopf.RawBody, dict(body))), type=kind, reason=reason, message=message[:1000]
        )
    except Exception as error:  # events are a courtesy; never fail a reconcile for one
        log.debug("could not post an event: %s", error)


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
    # Filter children on the server: a handler's `labels=` filter is applied by kopf after it has read
    # and decoded every Job and pod event in the cluster, ours or not.
    for group, version, plural in CHILD_RESOURCES:
        settings.watching.label_selectors[group, version, plural] = CHILDREN_SELECTOR
    if config.metrics_port:
        start_http_server(config.metrics_port, registry=opmetrics.REGISTRY)
    memo.operator = Operator(config, Kube(make_api_client()), _post_event)


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster first, then the file KUBECONFIG names *now*: the kubernetes client's own loader reads
    KUBECONFIG once, when it is imported, and would miss a value set later."""
    return kopf.login_with_service_account(settings=settings, **kwargs) or kopf.login_with_kubeconfig(
        settings=settings, **kwargs
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    if hasattr(memo, "operator"):
        await memo.operator.stop()


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
async def ensure_job(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    # Returns nothing: kopf would store a result under .status, which belongs to our schema.
    await memo.operator.ensure_job(body)


# on.update, not on.field: a field handler also runs on creation, as a second handler after ensure_job,
# which costs every new training an extra bookkeeping patch (and the watch event it causes).
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec.runPolicy.suspend")
async def suspend_changed(body: kopf.Body, new: Any, memo: kopf.Memo, **_: Any) -> None:
    await memo.operator.set_suspended(body, bool(new))


@kopf.on.event(GROUP, VERSION, PLURAL)
async def training_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await memo.operator.training_event(event.get("type"), body)


@kopf.on.event("batch", "v1", "jobs", labels=CHILDREN)
async def job_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await memo.operator.child_event("job", event.get("type"), body)


@kopf.on.event("", "v1", "pods", labels=CHILDREN)
async def pod_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await memo.operator.child_event("pod", event.get("type"), body)


def _has_ttl(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("runPolicy", {}).get("ttlSecondsAfterFinished") is not None


@kopf.timer(GROUP, VERSION, PLURAL, interval=5, when=_has_ttl)
async def expire_finished(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await memo.operator.expire_if_due(body)

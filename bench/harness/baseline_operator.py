"""The benchmark's floor: a kopf operator that, when an MnistTraining is created, POSTs a bare Job.

No status reflection, no Pushgateway poller, no children watches, no events: what remains is the cost of
kopf itself and the kubernetes client. It is set up like the real operator wherever the two would
otherwise differ for no reason of their own (login, bookkeeping in annotations, watch timeouts, posting
level), so ``ours / baseline`` measures what our handlers add.

Run: ``python -m bench.harness.baseline_operator`` from the repository root, with KUBECONFIG set (the
benchmark does this).
"""

import asyncio
import logging
import os
from typing import Any

import kopf
import kubernetes
from kubernetes.client import ApiClient, BatchV1Api
from kubernetes.client.exceptions import ApiException

# Spelled out rather than imported from mnist_api: that package brings pydantic along, which is part
# of our operator's cost, not of the floor. operator_scale.py checks they still match.
GROUP = "training.mnist-operator.io"
VERSION = "v1alpha1"
PLURAL = "mnisttrainings"


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    timeout = int(os.environ.get("MNIST_OPERATOR_WATCH_TIMEOUT_SECONDS", "300"))
    settings.watching.server_timeout = timeout
    settings.watching.client_timeout = timeout + 30
    settings.watching.connect_timeout = 30
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=os.environ.get("KUBECONFIG") or None, client_configuration=configuration
    )
    memo.batch = BatchV1Api(ApiClient(configuration))


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_with_kubeconfig(settings=settings, **kwargs)


@kopf.on.create(GROUP, VERSION, PLURAL)
async def create_job(name: str, namespace: str, uid: str, memo: kopf.Memo, **_: Any) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"{name}-trainer",
            "namespace": namespace,
            "ownerReferences": [
                {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MnistTraining", "name": name, "uid": uid}
            ],
        },
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "trainer", "image": "busybox"}],
                }
            }
        },
    }
    # The same client, in a worker thread, as the real operator: the floor includes that cost too.
    try:
        await asyncio.to_thread(memo.batch.create_namespaced_job, namespace, job)
    except ApiException as error:
        # If kopf ever runs a create handler twice, the Job is there already: the floor is one POST.
        if error.status != 409:
            raise


if __name__ == "__main__":
    kopf.configure(verbose=False)
    kopf.run(standalone=True, clusterwide=True)

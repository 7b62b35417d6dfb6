"""The contract of a multi-worker training: how its workers find each other.

A training of ``spec.workers: N`` runs as one Indexed Job of N pods (Kubernetes gives each pod its index
in ``JOB_COMPLETION_INDEX`` and the hostname ``<job>-<index>``) and a headless Service named like the Job,
which gives each pod the DNS name ``<job>-<index>.<job>``. The operator puts the workers' addresses in the
pod's environment (``TrainerConfig.worker_hosts``); each trainer builds its own ``TF_CONFIG`` from them and
its index with ``tf_config``. Local mode runs N processes on loopback ports and sets the same two
variables, so the same code path starts the same cluster on both.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

WORKER_PORT: Final = 2222
"""The port each worker's TensorFlow collective server listens on (TensorFlow's conventional one)."""
WORKER_PORT_NAME: Final = "tf-worker"
COMPLETION_INDEX_ENV: Final = "JOB_COMPLETION_INDEX"
"""Set by the Job controller on every pod of an Indexed Job; by local mode on every worker process."""
COMPLETION_INDEX_ANNOTATION: Final = "batch.kubernetes.io/job-completion-index"
"""The same index on the pod's metadata, where the operator (and local mode's status) reads it."""
TF_CONFIG_ENV: Final = "TF_CONFIG"
CHIEF_INDEX: Final = 0


def cluster_worker_hosts(job_name: str, workers: int, namespace: str, port: int = WORKER_PORT) -> list[str]:
    """Each worker's address on a cluster: the pod's name under the headless Service named ``job_name``.

    The namespace is spelled out (``<pod>.<service>.<namespace>.svc``) so the name resolves through the
    pod's resolv.conf search list whatever the cluster's domain is, and never depends on which of the
    search domains comes first."""
    return [f"{job_name}-{index}.{job_name}.{namespace}.svc:{port}" for index in range(workers)]


def local_worker_hosts(ports: Sequence[int]) -> list[str]:
    return [f"localhost:{port}" for port in ports]


def worker_index(environ: Mapping[str, str], workers: int) -> int:
    """This process's worker index, from ``JOB_COMPLETION_INDEX``; 0 for a single worker."""
    if workers <= 1:
        return CHIEF_INDEX
    text = environ.get(COMPLETION_INDEX_ENV)
    if text is None or not text.isdigit() or int(text) >= workers:
        raise ValueError(
            f"{COMPLETION_INDEX_ENV}={text!r}: a worker of a {workers}-worker training needs its index "
            f"(0 to {workers - 1}); the Job must be an Indexed Job"
        )
    return int(text)


def tf_config(worker_hosts: Sequence[str], index: int) -> dict[str, Any]:
    """TensorFlow's cluster description for worker ``index`` of ``worker_hosts``.

    Every worker is a plain ``worker`` (no separate ``chief`` task): MultiWorkerMirroredStrategy then
    treats worker 0 as the chief, which is what ``is_chief`` says too."""
    if not 0 <= index < len(worker_hosts):
        raise ValueError(f"worker index {index} is outside the {len(worker_hosts)} workers")
    return {"cluster": {"worker": list(worker_hosts)}, "task": {"type": "worker", "index": index}}


def tf_config_json(worker_hosts: Sequence[str], index: int) -> str:
    return json.dumps(tf_config(worker_hosts, index), separators=(",", ":"))


def is_chief(index: int) -> bool:
    return index == CHIEF_INDEX

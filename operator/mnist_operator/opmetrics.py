"""The operator's own Prometheus metrics (served on MNIST_OPERATOR_METRICS_PORT)."""

from prometheus_client import CollectorRegistry, Counter, Gauge

REGISTRY = CollectorRegistry()
TRAININGS_CREATED = Counter("mnist_operator_trainings_created", "Trainer Jobs created", registry=REGISTRY)
TRAININGS_FINISHED = Counter(
    "mnist_operator_trainings_finished", "Trainings that reached a final phase", ["phase"], registry=REGISTRY
)
TRAINER_RETRIES = Counter(
    "mnist_operator_trainer_retries", "Failed trainer pods that the Job retried", registry=REGISTRY
)
TRAININGS_BY_PHASE = Gauge("mnist_operator_trainings", "Trainings by phase", ["phase"], registry=REGISTRY)
PUSHGATEWAY_POLLS = Counter(
    "mnist_operator_pushgateway_polls", "Pushgateway polls", ["outcome"], registry=REGISTRY
)
PUSHGATEWAY_DELETES = Counter(
    "mnist_operator_pushgateway_deletes",
    "Deletes of a finished or orphaned run's Pushgateway group",
    ["outcome"],
    registry=REGISTRY,
)
ORPHANED_GROUPS = Counter(
    "mnist_operator_pushgateway_orphans_found",
    "Pushgateway groups found whose training no longer exists (deleted while the operator was down, "
    "or whose delete failed)",
    registry=REGISTRY,
)
STATUS_PATCHES = Counter("mnist_operator_status_patches", "Status patches written", registry=REGISTRY)

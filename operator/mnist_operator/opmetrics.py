"""The operator's own Prometheus metrics (served on MNIST_OPERATOR_METRICS_PORT)."""

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mnist_api import Phase

REGISTRY = CollectorRegistry()
TRAININGS_CREATED = Counter("mnist_operator_trainings_created", "Trainer Jobs created", registry=REGISTRY)
TRAININGS_FINISHED = Counter(
    "mnist_operator_trainings_finished", "Trainings that reached a final phase", ["phase"], registry=REGISTRY
)
TRAINER_RETRIES = Counter(
    "mnist_operator_trainer_retries", "Failed trainer pods that the Job retried", registry=REGISTRY
)
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

# Every label value a counter will ever take starts at 0: a series that appears at 1 hides its first
# increment from rate() and increase(), so the first failed training would never fire the chart's alert.
for _phase in (Phase.SUCCEEDED, Phase.FAILED):
    TRAININGS_FINISHED.labels(_phase.value)
for _outcome in ("ok", "error"):
    PUSHGATEWAY_POLLS.labels(_outcome)
    PUSHGATEWAY_DELETES.labels(_outcome)


class TrainingsByPhase(Collector):
    """``mnist_operator_trainings{phase}``, counted from the operator's store at each scrape: one number
    per phase, never out of step with what the operator knows (a counter kept by hand in every place that
    moves a training would be)."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[str]] = list

    def collect(self) -> Iterator[Metric]:
        tally = Tally(self.source())
        gauge = GaugeMetricFamily("mnist_operator_trainings", "Trainings by phase", labels=["phase"])
        for phase in Phase:
            gauge.add_metric([phase.value], tally.get(phase.value, 0))
        yield gauge


PHASES = TrainingsByPhase()
REGISTRY.register(PHASES)

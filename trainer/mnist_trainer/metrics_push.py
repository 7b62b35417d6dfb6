"""``TrainTestExporter``: a Keras callback that pushes training and test metrics to a Pushgateway.

Drop-in for the seeds' ``gangplank.TrainTestExporter`` (same constructor, same metric names, same bucket
presets), so their snippets work with ``from mnist_trainer import TrainTestExporter``. Differences, each
deliberate:

- ``grouping_key`` (keyword): each run pushes to its own Pushgateway group, so concurrent runs with the
  same job name never overwrite each other. Pushes use POST (``pushadd``), so the test push adds to the
  run's training metrics instead of replacing them.
- The weights histogram is computed in one vectorised pass (see ``histogram.py``), not one ``observe``
  per weight. As with prometheus-client's own histograms with negative buckets, no ``_sum`` is sent (the
  Pushgateway then shows ``_sum 0``, as in the seeds); ``last_weight_histogram`` has the true statistics.
- One instance may serve ``fit`` and then ``evaluate``; validation inside ``fit`` is not taken for a test.
- ``ignore_exceptions=True`` logs one warning line per failure instead of a traceback.
"""

import logging
import numbers
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import keras
from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from mnist_api.metrics import (
    DEFAULT_PREFIX,
    HISTOGRAM_WEIGHT_BUCKETS_0_3,
    HISTOGRAM_WEIGHT_BUCKETS_1_0,
    PREDICT_GAUGES,
    PREDICT_STAGE,
    TEST_CLASS_ACCURACY,
    TEST_STAGE,
    TRAIN_STAGE,
    WEIGHTS_HISTOGRAM,
    metric_name,
)

from .errors import MetricsPushError
from .histogram import WeightHistogram, weight_histogram

__all__ = ["HISTOGRAM_WEIGHT_BUCKETS_0_3", "HISTOGRAM_WEIGHT_BUCKETS_1_0", "TrainTestExporter"]

log = logging.getLogger(__name__)
PUSH_TIMEOUT_SECONDS = 10.0
Handler = Callable[..., Callable[[], None]]


class _HistogramCollector(Collector):
    """Serves a precomputed histogram to the registry (prometheus-client has no bulk ``observe``).

    Samples are written by hand because ``HistogramMetricFamily`` drops ``_count`` together with ``_sum``;
    we drop only ``_sum``, as prometheus-client's ``Histogram`` does when buckets are negative.
    """

    def __init__(self, name: str, histogram: WeightHistogram) -> None:
        self.name, self.histogram = name, histogram

    def collect(self) -> Iterable[Metric]:
        h = self.histogram
        family = Metric(self.name, "model trainable weights", "histogram")
        for bound, count in zip(h.bounds, h.cumulative_counts, strict=False):
            le = floatToGoString(bound)  # type: ignore[no-untyped-call]
            family.add_sample(f"{self.name}_bucket", {"le": le}, count)
        family.add_sample(f"{self.name}_bucket", {"le": "+Inf"}, h.count)
        family.add_sample(f"{self.name}_count", {}, h.count)
        yield family


class TrainTestExporter(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(  # noqa: PLR0917 - the seeds' constructor, positional arguments and all
        self,
        pgw_addr: str,
        job: str,
        metrics: Sequence[str] | None = None,
        histogram_buckets: Sequence[float] | None = None,
        handler: Handler | None = None,
        ignore_exceptions: bool = True,
        *,
        grouping_key: Mapping[str, str] | None = None,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = PUSH_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__()
        self.pgw_addr = pgw_addr
        self.job = job
        self.metrics = list(metrics) if metrics is not None else None
        self.histogram_buckets = list(histogram_buckets) if histogram_buckets else None
        self.handler = handler
        self.ignore_exceptions = ignore_exceptions
        self.grouping_key = dict(grouping_key or {})
        self.prefix = prefix
        self.timeout = timeout
        self.registry = CollectorRegistry()
        self.push_failures = 0
        self.last_weight_histogram: WeightHistogram | None = None
        self._gauges: dict[str, Gauge] = {}
        self._histograms: dict[str, _HistogramCollector] = {}
        self._in_fit = False
        self._train_started = 0.0
        self._elapsed_offset = 0.0
        self._test_started = 0.0

    # -- what the trainer may add beyond the seeds' API ---------------------------------------------
    def resume_elapsed(self, seconds: float) -> None:
        """Count training time of earlier attempts of this run in ``elapsed_time_seconds``."""
        self._elapsed_offset = seconds

    def push_class_accuracy(
        self, accuracy_by_class: Mapping[int, float], class_names: Sequence[str] | None = None
    ) -> None:
        """One sample per class: ``class`` is the label index ("0".."9" for the digits, as ever), and
        ``class_name`` the dataset's name for it (the digit again, "Sneaker", an image folder's name). The
        index stays the key so a dashboard keyed on ``class`` reads every dataset alike."""

        def push() -> None:
            name = metric_name(self.prefix, TEST_STAGE, TEST_CLASS_ACCURACY)
            gauge = self._gauges.get(name)
            if gauge is None:
                gauge = Gauge(
                    name, "Test accuracy per class", ["class", "class_name"], registry=self.registry
                )
                self._gauges[name] = gauge
            for label, value in accuracy_by_class.items():
                names = class_names or ()
                gauge.labels(str(label), names[label] if label < len(names) else str(label)).set(value)
            self._push()

        self._guarded(push)

    def push_predictions(self, images: int) -> None:
        """A prediction run's count of classified images (``<prefix>_predict_images``)."""

        def push() -> None:
            self._set(PREDICT_STAGE, "images", PREDICT_GAUGES["images"], images)
            self._push()

        self._guarded(push)

    # -- Keras callback hooks -------------------------------------------------------------------------
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._in_fit = True
        self._train_started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._guarded(lambda: self._export_epoch(epoch, logs or {}))

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._in_fit = False
        if self.histogram_buckets:
            self._guarded(lambda: self._export_histogram(TRAIN_STAGE))

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._test_started = time.monotonic()

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        if not self._in_fit:  # validation inside fit is not a test run
            self._guarded(lambda: self._export_test(logs or {}))

    # -- internals ------------------------------------------------------------------------------------
    def _export_epoch(self, epoch: int, logs: Mapping[str, Any]) -> None:
        self._set_logs(TRAIN_STAGE, logs)
        self._set(TRAIN_STAGE, "epochs_count", "the number of completed training epochs", epoch + 1)
        elapsed = self._elapsed_offset + time.monotonic() - self._train_started
        self._set(TRAIN_STAGE, "elapsed_time_seconds", "the amount of time spent training the model", elapsed)
        self._set_parameters(TRAIN_STAGE)
        self._push()

    def _export_test(self, logs: Mapping[str, Any]) -> None:
        self._set_logs(TEST_STAGE, logs)
        elapsed = time.monotonic() - self._test_started
        self._set(TEST_STAGE, "elapsed_time_seconds", "the amount of time spent testing the model", elapsed)
        self._set_parameters(TEST_STAGE)
        if self.histogram_buckets:
            self._add_histogram(TEST_STAGE)
        self._push()

    def _export_histogram(self, stage: str) -> None:
        self._add_histogram(stage)
        self._push()

    def _add_histogram(self, stage: str) -> None:
        assert self.histogram_buckets is not None
        weights = [w for layer in self.model.layers if layer.trainable for w in layer.get_weights()]
        histogram = weight_histogram(weights, self.histogram_buckets)
        self.last_weight_histogram = histogram
        name = metric_name(self.prefix, stage, WEIGHTS_HISTOGRAM)
        collector = self._histograms.get(name)
        if collector is None:
            collector = _HistogramCollector(name, histogram)
            self.registry.register(collector)
            self._histograms[name] = collector
        collector.histogram = histogram

    def _set_logs(self, stage: str, logs: Mapping[str, Any]) -> None:
        names = self.metrics if self.metrics is not None else list(logs)
        for key in names:
            value = logs.get(key)
            if isinstance(value, numbers.Number) or hasattr(value, "__float__"):
                self._set(stage, key, key, float(value))  # type: ignore[arg-type]

    def _set_parameters(self, stage: str) -> None:
        description = "the number of trainable and non-trainable model weights"
        self._set(stage, "model_parameters_count", description, self.model.count_params())

    def _set(self, stage: str, key: str, description: str, value: float) -> None:
        name = metric_name(self.prefix, stage, key)
        gauge = self._gauges.get(name)
        if gauge is None:
            gauge = Gauge(name, description, registry=self.registry)
            self._gauges[name] = gauge
        gauge.set(value)

    def _push(self) -> None:
        kwargs: dict[str, Any] = {"grouping_key": self.grouping_key, "timeout": self.timeout}
        if self.handler is not None:
            kwargs["handler"] = self.handler
        pushadd_to_gateway(self.pgw_addr, self.job, self.registry, **kwargs)

    def _guarded(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as error:
            if not self.ignore_exceptions:
                raise MetricsPushError(
                    f"metrics push to {self.pgw_addr} failed: {_reason(error)} (ignoreExceptions is false)"
                ) from error
            self.push_failures += 1
            log.warning(
                "metrics push to %s failed: %s (ignore_exceptions is set: training goes on)",
                self.pgw_addr,
                _reason(error),
            )


def _reason(error: Exception) -> str:
    reason = getattr(error, "reason", None)
    return f"{type(error).__name__}: {reason if reason is not None else error}"

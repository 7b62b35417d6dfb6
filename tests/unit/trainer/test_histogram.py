"""The vectorised weight histogram against prometheus-client's own per-weight ``observe``."""

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from mnist_api.metrics import HISTOGRAM_WEIGHT_BUCKETS_0_3, HISTOGRAM_WEIGHT_BUCKETS_1_0
from mnist_trainer.histogram import weight_histogram


def observed_counts(values: np.ndarray, bounds: tuple[float, ...]) -> list[int]:
    registry = CollectorRegistry()
    histogram = Histogram("w", "weights", buckets=bounds, registry=registry)
    for value in values:
        histogram.observe(float(value))
    samples = next(iter(registry.collect())).samples
    return [int(s.value) for s in samples if s.name == "w_bucket"]


@pytest.mark.parametrize("bounds", [HISTOGRAM_WEIGHT_BUCKETS_0_3, HISTOGRAM_WEIGHT_BUCKETS_1_0])
def test_counts_equal_one_observe_per_weight(bounds: tuple[float, ...]) -> None:
    rng = np.random.default_rng(1)
    # Values exactly on the bounds check that `le` is inclusive.
    values = np.concatenate([rng.normal(0, 0.2, 5000), np.array(bounds), np.array([-5.0, 5.0])])
    weights = [values[:3000].reshape(30, 100), values[3000:]]
    result = weight_histogram(weights, bounds)
    assert list(result.cumulative_counts) == observed_counts(values, bounds)
    assert result.count == values.size
    assert result.total == pytest.approx(values.sum())
    assert (result.minimum, result.maximum) == (-5.0, 5.0)
    assert result.std == pytest.approx(values.std())


def test_no_weights_gives_an_empty_histogram() -> None:
    result = weight_histogram([], (0.0, 1.0))
    assert result.cumulative_counts == (0, 0, 0) and result.count == 0

"""Exporter: the weights histogram computed vectorised against the seeds' one ``observe`` per weight, and
the latency of pushing the exporter's full registry to a real Pushgateway against an empty push.

1. **histogram**: ``mnist_trainer.histogram.weight_histogram`` (one ``searchsorted`` + ``bincount``
   pass) against the seeds' loop (a prometheus-client ``Histogram`` and ``observe`` for every weight of
   ``model.get_weights()``, exactly as gangplank's ``_construct_histogram``), with the seeds' 0.3 buckets
   (the spec default), for the convnet (104,202 weights) and for a dense model of about 10M weights.
   Repetitions alternate between the two ways. The per-weight loop over 10M weights takes long, so by
   default it runs on the first ``--loop-sample`` weights and its time is scaled linearly to the whole
   model (the loop does the same work per weight, so it is linear; ``--full-loop`` measures it whole).
   The bucket counts of both ways are compared, so the speed-up is not bought with a different answer.
2. **push latency**: ``pushadd`` (POST, what the trainer sends) of the registry a ``TrainTestExporter``
   holds after a whole run (train and test gauges, both weight histograms) against ``pushadd`` of an
   empty registry, the baseline, to the same real Pushgateway: ``--pushes`` of each, alternating;
   median and p95, and their ratios.

    python -m bench.exporter [--repeats 5] [--loop-sample 1000000] [--full-loop] [--pushes 50] \
        [--big-params 10000000]
"""

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# First: _common sets TensorFlow's logging and device variables before TensorFlow is imported.
from bench import _common as common

# isort: split
import keras
import numpy as np
from prometheus_client import CollectorRegistry, Histogram, pushadd_to_gateway

from mnist_api.metrics import HISTOGRAM_WEIGHT_BUCKETS_0_3, grouping_key
from mnist_trainer.histogram import weight_histogram
from mnist_trainer.metrics_push import TrainTestExporter
from mnist_trainer.models import build_model
from tests.support.servers import start_pushgateway

BUCKETS = list(HISTOGRAM_WEIGHT_BUCKETS_0_3)


def dense_model(parameters: int) -> keras.Model:
    """784 -> h -> h -> 10 with h chosen so the model has about ``parameters`` weights: the size of
    model the issue asks about, built from plain layers (the zoo has nothing that big)."""
    # weights = 784h + h + h^2 + h + 10h + 10 = h^2 + 796h + 10; solve for h.
    hidden = int((-796 + (796**2 + 4 * (parameters - 10)) ** 0.5) / 2)
    inputs = keras.Input(shape=(784,))
    x = keras.layers.Dense(hidden, activation="relu")(inputs)
    x = keras.layers.Dense(hidden, activation="relu")(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=f"dense_{hidden}x2")


def seeds_histogram(weights: Sequence[np.ndarray], limit: int | None = None) -> tuple[list[float], int]:
    """gangplank's ``_construct_histogram``: a Histogram and one ``observe`` per weight (up to
    ``limit`` weights). Returns the cumulative bucket counts (+Inf last) and how many were observed."""
    histogram = Histogram(
        "model_weights", "model weights/parameters", buckets=BUCKETS, registry=CollectorRegistry()
    )
    observed = 0
    for layer_weights in weights:
        for w in layer_weights.flatten():
            if limit is not None and observed >= limit:
                break
            histogram.observe(w)
            observed += 1
    buckets = [s.value for m in histogram.collect() for s in m.samples if s.name.endswith("_bucket")]
    return buckets, observed


def flat_prefix(weights: Sequence[np.ndarray], limit: int) -> list[np.ndarray]:
    """The first ``limit`` weights, in the order the seeds' loop visits them."""
    out, left = [], limit
    for w in weights:
        flat = w.ravel()[:left]
        out.append(flat)
        left -= len(flat)
        if left <= 0:
            break
    return out


def compare_histograms(name: str, model: keras.Model, args: argparse.Namespace) -> dict[str, Any]:
    weights = model.get_weights()
    total = sum(w.size for w in weights)
    limit = None if args.full_loop or total <= args.loop_sample else args.loop_sample
    vectorised, loop = [], []
    same = True
    for _ in range(args.repeats):
        # Alternate the two ways in each repetition; the vectorised one is timed on all weights.
        started = time.perf_counter()
        ours = weight_histogram(weights, BUCKETS)
        vectorised.append(time.perf_counter() - started)
        started = time.perf_counter()
        counts, observed = seeds_histogram(weights, limit)
        loop.append((time.perf_counter() - started) * total / observed)  # scaled when sampled
        # Same answer? On a sample, compare with the vectorised count of that same sample.
        expected = ours if limit is None else weight_histogram(flat_prefix(weights, observed), BUCKETS)
        same = same and [int(c) for c in counts] == list(expected.cumulative_counts)
    ratio = common.median(loop) / common.median(vectorised)
    return {
        "model": name,
        "weights": total,
        "loop_weights_timed": total if limit is None else limit,
        "loop_extrapolated": limit is not None,
        "vectorised_seconds": vectorised,
        "per_weight_loop_seconds": loop,
        "vectorised_median_seconds": common.median(vectorised),
        "per_weight_loop_median_seconds": common.median(loop),
        "speedup": ratio,
        "identical_bucket_counts": same,
    }


def push_latency(args: argparse.Namespace) -> dict[str, Any]:
    """The registry a TrainTestExporter holds at the end of a run, pushed as the trainer pushes it."""
    gateway = start_pushgateway()
    try:
        model = build_model("convnet")
        key = grouping_key("bench", "exporter", "uid-1")
        exporter = TrainTestExporter(gateway.url, "mnist", histogram_buckets=BUCKETS, grouping_key=key)
        exporter.set_model(model)
        # A whole run's metrics through the real hooks: an epoch, the end of training (train
        # histogram), then a test run (test gauges and histogram) and the per-class accuracies.
        exporter.on_train_begin()
        exporter.on_epoch_end(0, {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.4, "val_accuracy": 0.85})
        exporter.on_train_end()
        exporter.on_test_begin()
        exporter.on_test_end({"loss": 0.4, "accuracy": 0.86})
        exporter.push_class_accuracy({c: 0.8 + c / 100 for c in range(10)})
        if exporter.push_failures:
            raise SystemExit(f"the Pushgateway at {gateway.url} refused {exporter.push_failures} push(es)")
        samples = sum(len(m.samples) for m in exporter.registry.collect())
        empty = CollectorRegistry()
        empty_key = grouping_key("bench", "exporter-empty", "uid-1")

        def push_full() -> None:
            pushadd_to_gateway(gateway.url, "mnist", exporter.registry, grouping_key=key, timeout=10)

        def push_empty() -> None:
            pushadd_to_gateway(gateway.url, "mnist", empty, grouping_key=empty_key, timeout=10)

        for _ in range(5):  # warm the connection path and the Pushgateway's allocations, untimed
            push_empty()
            push_full()
        full: list[float] = []
        baseline: list[float] = []
        for i in range(args.pushes):
            # Alternate which goes first, so neither always follows the other.
            order = [(full, push_full), (baseline, push_empty)]
            for record, push in order if i % 2 else reversed(order):
                record.append(common.timed(push))
    finally:
        gateway.stop()
    return {
        "samples_in_full_registry": samples,
        "pushes": args.pushes,
        "full_seconds": full,
        "empty_seconds": baseline,
        "full_median_ms": 1000 * common.median(full),
        "full_p95_ms": 1000 * common.percentile(full, 0.95),
        "empty_median_ms": 1000 * common.median(baseline),
        "empty_p95_ms": 1000 * common.percentile(baseline, 0.95),
        "median_ratio": common.median(full) / common.median(baseline),
        "p95_ratio": common.percentile(full, 0.95) / common.percentile(baseline, 0.95),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.exporter",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="alternating repetitions of each histogram way"
    )
    parser.add_argument(
        "--loop-sample", type=int, default=1_000_000, help="weights the per-weight loop times"
    )
    parser.add_argument("--full-loop", action="store_true", help="time the per-weight loop on every weight")
    parser.add_argument("--big-params", type=int, default=10_000_000, help="size of the big dense model")
    parser.add_argument("--pushes", type=int, default=50, help="pushes of each kind")
    parser.add_argument("--json", type=Path, help="results file (default bench/results/exporter.json)")
    args = parser.parse_args()
    started = time.monotonic()

    common.section(f"1. weights histogram: vectorised vs one observe per weight ({len(BUCKETS)} buckets)")
    keras.utils.set_random_seed(0)
    histograms = [
        compare_histograms("convnet", build_model("convnet"), args),
        compare_histograms("dense ~10M", dense_model(args.big_params), args),
    ]
    rows = [
        [
            h["model"],
            h["weights"],
            1000 * h["vectorised_median_seconds"],
            1000 * h["per_weight_loop_median_seconds"],
            f"{h['speedup']:,.0f}x",
            "yes" if h["identical_bucket_counts"] else "NO",
            "extrapolated from " + f"{h['loop_weights_timed']:,}"
            if h["loop_extrapolated"]
            else "measured whole",
        ]
        for h in histograms
    ]
    headers = [
        "model",
        "weights",
        "vectorised ms",
        "per-weight loop ms",
        "speed-up",
        "same counts",
        "loop time",
    ]
    print(common.table(headers, rows))

    common.section(
        f"2. push latency to a real Pushgateway: full registry vs empty ({args.pushes} pushes each)"
    )
    push = push_latency(args)
    push_headers = ["registry", "samples", "median ms", "p95 ms", "median ratio", "p95 ratio"]
    push_rows = [
        ["empty (baseline)", 0, push["empty_median_ms"], push["empty_p95_ms"], 1.0, 1.0],
        [
            "exporter's, end of run",
            push["samples_in_full_registry"],
            push["full_median_ms"],
            push["full_p95_ms"],
            push["median_ratio"],
            push["p95_ratio"],
        ],
    ]
    print(common.table(push_headers, push_rows))

    payload = {
        "settings": {k: v for k, v in vars(args).items() if k != "json"},  # a Path is no JSON
        "buckets": BUCKETS,
        "histogram": histograms,
        "push": push,
        "tables": {
            "histogram": {"headers": headers, "rows": rows},
            "push": {"headers": push_headers, "rows": push_rows},
        },
        "wall_seconds": time.monotonic() - started,
    }
    path = common.write_results("exporter", payload, args.json)
    print(f"\n{payload['wall_seconds']:.0f}s; results in {path}")


if __name__ == "__main__":
    main()

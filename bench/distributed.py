"""Data-parallel training across workers: two trainer processes against one, on real Fashion-MNIST.

What the product does when ``spec.workers: 2`` (``mnist_trainer.distributed``): every worker builds the
model in ``MultiWorkerMirroredStrategy``'s scope, reads the whole seeded dataset and keeps its half of
each global batch (``shard_by_data``), and steps through the custom loop ``fit_across_workers``, which
sums the gradients of both halves with one all-reduce per step. This benchmark runs exactly that, built
from the trainer's own functions (``start_cluster``, ``strategy_scope``, ``build_compiled_model``,
``pipeline.train_model``, which calls ``to_dataset``, ``shard_by_data`` and ``fit_across_workers`` or
``model.fit``, then ``best_checkpoint`` and ``evaluate_model``), not copies, against the product's
single-worker path (``start_cluster`` gives no strategy, ``train_model`` calls Keras' ``model.fit``).

Method. Each worker is a separate OS process (``python -m bench.distributed --worker ...``), started by
this benchmark with the environment a pod gets (``JOB_COMPLETION_INDEX``; the workers' addresses,
``localhost:<port>`` on free loopback ports, go into ``TrainerConfig.worker_hosts`` as local mode puts
them), with ``tf.config.threading`` intra-op and inter-op parallelism set to ``--threads`` (1) before
TensorFlow runs any op: 2 workers x 1 thread against 1 worker x 1 thread, so each worker has one of the
machine's two cores. The variants run one after the other, never at once; with ``--rounds`` > 1 their
order alternates. Same seed, same spec hyperparameters (convnet, adam, lr 0.001, global batch 64), same
epochs, all 60,000 training images: ``--validation-split`` is 0 by default, so an epoch's time is its
training steps (plus the chief's per-epoch checkpoint writes, as in the product) and images/s is
training throughput. The workers write what they measured (the product's own per-epoch images/s from
``ProgressLog``, their weights and optimizer state as .npz, the chief's test accuracy) to a temporary
folder this process reads.

1. **Correctness.** After the 2-worker run, every weight array (and every optimizer variable) of worker 0
   against worker 1: the largest absolute difference (expected: exactly 0, the all-reduce gives both
   the same sum and both apply the same update). Test accuracy of 2 workers with global batch 64 against
   1 worker with batch 64, same seed and epochs, each through the product's ``best_checkpoint`` and
   ``evaluate_model``: target within 0.01. (Not bit-identical: a sum of two half-batch gradients rounds
   differently from one full-batch gradient, and the two paths differ in order of operations.)
2. **Scaling.** Training images/s of 2 workers x 1 thread against 1 worker x 1 thread, from the later
   epochs (the first traces the graph; its figures are reported too). Target >= 1.6x. Cross-check: CPU
   seconds per 1,000 images (all the variant's processes), which other load disturbs less than wall time.
3. **All-reduce.** After training, both workers time many calls of a ``tf.function`` that all-reduces,
   with the same strategy and the same call Keras' optimizer makes (``ReplicaContext.all_reduce(SUM,
   list)``), a list of tensors shaped like the convnet's trainable variables: 104,202 float32 = 417 KB.
   A one-float all-reduce gives the latency floor of a collective. Compared with the measured time of a
   training step of the 2-worker run: the all-reduce's share of a step. Also timed: the eager ``next()``
   on the distributed training data that the trainer's loop makes once per step (in multi-worker mode
   TensorFlow's iterator checks with every worker, per batch, that data remain).

What to expect on 2-8 GPU nodes (on paper; this machine has no GPU and no network). The convnet's
gradient is 104,202 float32 = 416,808 bytes per step. A ring all-reduce moves 2(N-1)/N of it in and out
of each worker: 417 KB at N = 2, 729 KB at N = 8. At 10 Gbit/s (1.25 GB/s; a common EKS node without
EFA) that is 0.33-0.58 ms of transfer per step, at 100 Gbit/s 0.03-0.06 ms. But a ring takes 2(N-1)
sequential hops, each paying the network's latency and the collective's own overhead (TCP in a VPC:
~50-100 us per hop; TensorFlow's gRPC collectives on CPU cost far more, see the one-float figure below);
at N = 8 that is 14 hops, about 1-2 ms per step however fast the links. Against that, a GPU's step of
this convnet is tiny: ~3.1 M multiply-adds per image forward, ~19 MFLOP forward and backward, 1.2 GFLOP
for batch 64, well under a millisecond of arithmetic on any datacentre GPU, so the step takes the 1-3 ms
of kernel launches and Python dispatch. Worse, ``spec.batchSize`` is the global batch: N workers split
64 images, 8 each at N = 8, which shrinks the compute per step and leaves the all-reduce as it is. So for
this model, 2-8 GPU nodes are latency-bound: expect little speed-up, quite possibly a slow-down against
one GPU. Larger per-worker batches (raise ``batchSize`` with ``workers``, e.g. 256-1024 per worker,
usually with a larger learning rate) amortise the all-reduce over more compute. The feature is for
models and data that outgrow one node: a model of 100 M parameters exchanges 400 MB per step, but its
step also takes hundreds of milliseconds, and that ratio, not this convnet's, is where data parallelism
pays.

    python -m bench.distributed [--epochs 2] [--train-images 60000] [--batch-size 64] [--threads 1] \
        [--rounds 1] [--allreduce-calls 400] [--validation-split 0] [--json PATH]
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# First: _common sets TensorFlow's logging and device variables before TensorFlow is imported.
from bench import _common as common

# isort: split
import numpy as np

from mnist_api.distribution import COMPLETION_INDEX_ENV, TF_CONFIG_ENV, local_worker_hosts
from mnist_api.spec import MnistTrainingSpec

_SPEC = MnistTrainingSpec()
SEED = 42
WORKER_COUNTS = (1, 2)
CONVNET_PARAMETERS = 104_202  # the zoo's convnet; checked against the model the workers build
TARGET_SPEED_UP = 1.6
TARGET_ACCURACY_GAP = 0.01


# -- the worker: one trainer process -------------------------------------------------------------------
def worker_main(args: argparse.Namespace) -> None:
    """One worker of a variant: the product's train stage, then (2 workers) the all-reduce timing, then
    (the chief) the product's evaluation; everything measured goes to ``args.out`` as JSON and .npz."""
    import logging

    import tensorflow as tf

    # Before any op: the context is created with these, and cannot change them afterwards.
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    import keras

    from mnist_api.env import TrainerConfig
    from mnist_trainer.datasets import CLASS_NAMES, MnistData
    from mnist_trainer.distributed import start_cluster, strategy_scope
    from mnist_trainer.inputs import split_train_validation, steps_per_epoch
    from mnist_trainer.pipeline import (
        Images,
        best_checkpoint,
        build_compiled_model,
        evaluate_model,
        run_paths,
        train_model,
    )
    from mnist_trainer.stop_requests import StopRequests

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out = Path(args.out)
    hosts = args.hosts.split(",") if args.hosts else []
    config = TrainerConfig(
        namespace="bench",
        name=f"distributed-{args.workers}",
        uid=f"bench-{args.workers}-{os.getpid()}",
        dataset="fashion-mnist",
        data_dir=str(out / "data"),
        output_dir=str(out / "output"),
        model=_SPEC.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=_SPEC.learning_rate,
        optimizer=str(_SPEC.optimizer.value),
        validation_split=args.validation_split,
        seed=args.seed,
        export_formats=["keras"],
        model_card=False,
        workers=args.workers,
        worker_hosts=hosts,
    )
    environ = dict(os.environ)
    started = time.perf_counter()
    cluster = start_cluster(config, environ)  # before TensorFlow's first op, as train_task does
    join_seconds = time.perf_counter() - started
    keras.utils.set_random_seed(args.seed)
    arrays = common.load_fashion_mnist(Path(args.data_dir))
    n = min(args.train_images, len(arrays["x_train"]))
    data = MnistData(
        arrays["x_train"][:n],
        arrays["y_train"][:n],
        arrays["x_test"],
        arrays["y_test"],
        CLASS_NAMES["fashion-mnist"],
    )
    images = Images(
        split_train_validation(data, config.validation_split, args.seed),
        data.x_test,
        data.y_test,
        data.class_names,
    )
    with strategy_scope(cluster):
        model = build_compiled_model(
            config,
            num_classes=len(images.class_names),
            steps_per_epoch=steps_per_epoch(len(images.splits.x_train), config.batch_size),
        )
    stops, paths = StopRequests(), run_paths(config)

    cpu_started, started = time.process_time(), time.perf_counter()
    callbacks = train_model(
        model, images, config, seed=args.seed, paths=paths, environ={}, stops=stops, cluster=cluster
    )
    train_seconds, train_cpu = time.perf_counter() - started, time.process_time() - cpu_started

    np.savez(out / f"weights-{cluster.index}.npz", *model.get_weights())
    np.savez(out / f"optimizer-{cluster.index}.npz", *[np.asarray(v) for v in model.optimizer.variables])
    result: dict[str, Any] = {
        "index": cluster.index,
        "workers": cluster.workers,
        "replicas": cluster.replicas,
        "threads": args.threads,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "parameters": int(model.count_params()),
        "trainable_shapes": [list(v.shape) for v in model.trainable_variables],
        "train_images": len(images.splits.x_train),
        "steps_per_epoch": steps_per_epoch(len(images.splits.x_train), config.batch_size),
        "join_seconds": join_seconds,
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu,
        "images_per_second": callbacks.progress.images_per_second,  # the product's own, per epoch
        "history": callbacks.run_state.history,
    }
    if cluster.across_workers:
        assert cluster.strategy is not None
        shapes = [tuple(v.shape) for v in model.trainable_variables]
        result["allreduce"] = {
            "gradient": time_all_reduce(cluster.strategy, shapes, args.allreduce_calls),
            "one_float": time_all_reduce(cluster.strategy, [(1,)], args.allreduce_calls),
        }
        result["next_batch_seconds"] = time_next_batch(
            cluster.strategy,
            images.splits,
            config.batch_size,
            args.seed,
            min(200, result["steps_per_epoch"] - 10),
        )
    if cluster.is_chief:
        best = best_checkpoint(model, paths, callbacks, distributed=cluster.strategy is not None)
        evaluation = evaluate_model(best, images, config.batch_size, stops, None)
        result["test"] = {"accuracy": evaluation.accuracy, "loss": evaluation.loss}
    (out / f"worker-{cluster.index}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")


def time_all_reduce(
    strategy: Any, shapes: list[tuple[int, ...]], calls: int, blocks: int = 8
) -> dict[str, Any]:
    """Seconds per call of one all-reduce (SUM) of tensors of ``shapes`` across the strategy's workers,
    made as Keras' optimizer makes it for the gradients. Every worker runs the same calls: each call
    waits for the others, as in training. ``calls`` are timed in ``blocks``; the median block counts."""
    import tensorflow as tf

    tensors = [tf.ones(shape, tf.float32) for shape in shapes]

    def replica(values: list[Any]) -> Any:
        # Made inside the replica function, as gradients are: they get the replica's device, which the
        # all-reduce needs as its destination (the function's inputs have none).
        local = [tf.identity(value) for value in values]
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, local)

    @tf.function  # type: ignore[untyped-decorator]
    def all_reduce(values: list[Any]) -> Any:
        return strategy.run(replica, args=(values,))

    for _ in range(10):  # trace, and let the collective's first instance set up its ring
        reduced = all_reduce(tensors)
    per_block = max(1, calls // blocks)
    seconds = []
    for _ in range(blocks):
        started = time.perf_counter()
        for _ in range(per_block):
            reduced = all_reduce(tensors)
        np.asarray(reduced[-1])  # the last call's result is here, so every call has finished
        seconds.append((time.perf_counter() - started) / per_block)
    expected = float(strategy.num_replicas_in_sync)  # ones, summed over every replica
    assert float(np.asarray(reduced[-1]).flat[0]) == expected, "the all-reduce did not sum the workers"
    return {
        "floats": int(sum(np.prod(shape) for shape in shapes)),
        "bytes": int(sum(np.prod(shape) for shape in shapes)) * 4,
        "tensors": len(shapes),
        "calls": per_block * blocks,
        "seconds_per_call_blocks": seconds,
        "seconds_per_call": common.median(seconds),
    }


def time_next_batch(strategy: Any, splits: Any, batch_size: int, seed: int, batches: int) -> float:
    """Seconds per ``next()`` on the training data as ``fit_across_workers`` iterates it: the trainer's
    ``to_dataset`` and ``shard_by_data``, repeated, distributed by the strategy, iterated eagerly in
    Python, one batch per step. (Of a finite dataset, TensorFlow's multi-worker iterator would check
    with every worker that data remain, an eager cross-worker reduce per batch:
    ``input_lib._calculate_replicas_with_values``; the loop repeats the data to avoid it.) Every worker
    calls it the same number of times."""
    from mnist_trainer.distributed import shard_by_data
    from mnist_trainer.inputs import to_dataset

    train = shard_by_data(to_dataset(splits.x_train, splits.y_train, batch_size, shuffle_seed=seed))
    iterator = iter(strategy.experimental_distribute_dataset(train.repeat()))
    for _ in range(5):
        next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return (time.perf_counter() - started) / max(batches, 1)


# -- the benchmark: runs the variants, compares --------------------------------------------------------
def free_ports(count: int) -> list[int]:
    """Free loopback ports, held open together so that no two are the same."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Variant:
    workers: int
    round_index: int
    folder: Path
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def result(self, index: int) -> dict[str, Any]:
        return json.loads((self.folder / f"worker-{index}.json").read_text(encoding="utf-8"))

    def arrays(self, kind: str, index: int) -> list[np.ndarray]:
        with np.load(self.folder / f"{kind}-{index}.npz") as stored:
            return [stored[f"arr_{i}"] for i in range(len(stored.files))]


def run_variant(args: argparse.Namespace, workers: int, round_index: int, root: Path) -> Variant:
    """``workers`` trainer processes at once (one for the baseline); returns when all have finished."""
    folder = root / f"round-{round_index + 1}-workers-{workers}"
    folder.mkdir(parents=True)
    hosts = local_worker_hosts(free_ports(workers)) if workers > 1 else []
    processes = []
    started = time.perf_counter()
    cpu_before = os.times()
    for index in range(workers):
        env = {k: v for k, v in os.environ.items() if k != TF_CONFIG_ENV}
        env[COMPLETION_INDEX_ENV] = str(index)
        command = [
            sys.executable,
            "-m",
            "bench.distributed",
            "--worker",
            "--out",
            str(folder),
            "--workers",
            str(workers),
            "--hosts",
            ",".join(hosts),
            "--threads",
            str(args.threads),
            "--epochs",
            str(args.epochs),
            "--train-images",
            str(args.train_images),
            "--batch-size",
            str(args.batch_size),
            "--validation-split",
            str(args.validation_split),
            "--seed",
            str(args.seed),
            "--allreduce-calls",
            str(args.allreduce_calls),
            "--data-dir",
            str(args.data_dir),
        ]
        log = (folder / f"worker-{index}.log").open("w", encoding="utf-8")
        processes.append(
            subprocess.Popen(command, cwd=common.REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        )
    try:
        deadline = time.monotonic() + args.timeout
        while any(p.poll() is None for p in processes):
            failed = [i for i, p in enumerate(processes) if p.poll() not in (None, 0)]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    cpu_after = os.times()
    variant = Variant(workers, round_index, folder, time.perf_counter() - started)
    variant.cpu_seconds = (cpu_after.children_user - cpu_before.children_user) + (
        cpu_after.children_system - cpu_before.children_system
    )
    failed = [i for i, p in enumerate(processes) if p.returncode != 0]
    if failed:
        for index in failed:
            tail = (folder / f"worker-{index}.log").read_text(encoding="utf-8")[-4000:]
            print(f"--- worker {index} of {workers} (exit {processes[index].returncode}):\n{tail}")
        sys.exit(f"the {workers}-worker run failed (workers {failed}); logs in {folder}")
    return variant


def steady(rates: list[float]) -> float:
    """Images/s of the epochs after the first (which traces the graph); the first's if there is one."""
    return common.median(rates[1:] or rates)


def max_abs_difference(left: list[np.ndarray], right: list[np.ndarray]) -> float:
    assert len(left) == len(right), (len(left), len(right))
    return max(
        (float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0)
        for a, b in zip(left, right, strict=True)
    )


def summarise(args: argparse.Namespace, variants: list[Variant]) -> dict[str, Any]:
    """Per round: correctness, scaling and all-reduce figures; then the medians over rounds."""
    rounds = []
    for round_index in range(args.rounds):
        one = next(v for v in variants if v.round_index == round_index and v.workers == 1)
        two = next(v for v in variants if v.round_index == round_index and v.workers == 2)
        single, chief, other = one.result(0), two.result(0), two.result(1)
        assert chief["parameters"] == CONVNET_PARAMETERS, chief["parameters"]
        weights = [two.arrays("weights", i) for i in (0, 1)]
        optimizer = [two.arrays("optimizer", i) for i in (0, 1)]
        steps = chief["steps_per_epoch"]
        single_rate, pair_rate = steady(single["images_per_second"]), steady(chief["images_per_second"])
        train_images = chief["train_images"] * len(chief["images_per_second"])
        gradient = chief["allreduce"]["gradient"]
        one_float = chief["allreduce"]["one_float"]
        step_seconds_pair = args.batch_size / pair_rate
        rounds.append(
            {
                "round": round_index + 1,
                "weights_arrays": len(weights[0]),
                "weights_max_abs_difference": max_abs_difference(*weights),
                "weights_identical": all(np.array_equal(a, b) for a, b in zip(*weights, strict=True)),
                "optimizer_variables": len(optimizer[0]),
                "optimizer_max_abs_difference": max_abs_difference(*optimizer),
                "weights_max_abs_difference_1_vs_2_workers": max_abs_difference(
                    one.arrays("weights", 0), weights[0]
                ),
                "test_accuracy_1_worker": single["test"]["accuracy"],
                "test_accuracy_2_workers": chief["test"]["accuracy"],
                "test_accuracy_gap": abs(chief["test"]["accuracy"] - single["test"]["accuracy"]),
                "test_loss_1_worker": single["test"]["loss"],
                "test_loss_2_workers": chief["test"]["loss"],
                "history_1_worker": single["history"],
                "history_2_workers_chief": chief["history"],
                "history_2_workers_other": other["history"],
                "images_per_second_1_worker": single["images_per_second"],
                "images_per_second_2_workers": chief["images_per_second"],
                "images_per_second_2_workers_other": other["images_per_second"],
                "speed_up_steady": pair_rate / single_rate,
                "speed_up_first_epoch": chief["images_per_second"][0] / single["images_per_second"][0],
                "train_seconds_1_worker": single["train_seconds"],
                "train_seconds_2_workers": chief["train_seconds"],
                "speed_up_train_seconds": single["train_seconds"] / chief["train_seconds"],
                "cpu_seconds_per_1k_images_1_worker": 1000 * single["train_cpu_seconds"] / train_images,
                "cpu_seconds_per_1k_images_2_workers": 1000
                * (chief["train_cpu_seconds"] + other["train_cpu_seconds"])
                / train_images,
                "step_seconds_1_worker": args.batch_size / single_rate,
                "step_seconds_2_workers": step_seconds_pair,
                "steps_per_epoch": steps,
                "allreduce_gradient_seconds": gradient["seconds_per_call"],
                "allreduce_gradient_seconds_other_worker": other["allreduce"]["gradient"]["seconds_per_call"],
                "allreduce_one_float_seconds": one_float["seconds_per_call"],
                "allreduce_gradient_bytes": gradient["bytes"],
                "allreduce_gradient_tensors": gradient["tensors"],
                "allreduce_calls": gradient["calls"],
                "allreduce_share_of_step": gradient["seconds_per_call"] / step_seconds_pair,
                "next_batch_seconds": chief["next_batch_seconds"],
                "next_batch_share_of_step": chief["next_batch_seconds"] / step_seconds_pair,
                "join_seconds_2_workers": max(chief["join_seconds"], other["join_seconds"]),
                "intra_op_threads": [single["intra_op_threads"], chief["intra_op_threads"]],
                "inter_op_threads": [single["inter_op_threads"], chief["inter_op_threads"]],
                "variant_seconds": {"1": one.seconds, "2": two.seconds},
                "variant_cpu_seconds": {"1": one.cpu_seconds, "2": two.cpu_seconds},
            }
        )
    keys = [k for k, v in rounds[0].items() if isinstance(v, int | float) and not isinstance(v, bool)]
    medians = {k: common.median([r[k] for r in rounds]) for k in keys}
    return {"rounds": rounds, "medians": medians}


def report(args: argparse.Namespace, summary: dict[str, Any]) -> list[list[object]]:
    rounds, m = summary["rounds"], summary["medians"]
    worst_weights = max(r["weights_max_abs_difference"] for r in rounds)
    worst_optimizer = max(r["optimizer_max_abs_difference"] for r in rounds)
    worst_gap = max(r["test_accuracy_gap"] for r in rounds)
    identical = all(r["weights_identical"] for r in rounds)
    speed_up = m["speed_up_steady"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    common.section(
        f"correctness: 2 workers (global batch {args.batch_size}) against 1 worker (batch {args.batch_size})"
    )
    rows_correct: list[list[object]] = [
        [
            f"weights, worker 0 vs 1 ({rounds[0]['weights_arrays']} arrays)",
            f"max |diff| {worst_weights:g}",
            "identical" if identical else "differ",
            "0",
            verdict(worst_weights == 0),
        ],
        [
            f"optimizer state, worker 0 vs 1 ({rounds[0]['optimizer_variables']} variables)",
            f"max |diff| {worst_optimizer:g}",
            "",
            "0",
            verdict(worst_optimizer == 0),
        ],
        [
            "test accuracy, 1 worker / 2 workers",
            f"{m['test_accuracy_1_worker']:.4f} / {m['test_accuracy_2_workers']:.4f}",
            f"gap {worst_gap:.4f}",
            f"<= {TARGET_ACCURACY_GAP}",
            verdict(worst_gap <= TARGET_ACCURACY_GAP),
        ],
        [
            "weights, 1 worker vs 2 workers (for scale)",
            f"max |diff| {m['weights_max_abs_difference_1_vs_2_workers']:.3g}",
            "",
            "",
            "",
        ],
    ]
    print(common.table(["check", "figure", "", "target", "verdict"], rows_correct))

    common.section(
        f"scaling: {args.threads} thread(s) per worker, images/s of training (later epochs; first epoch "
        "traces the graph)"
    )
    rows_scaling: list[list[object]] = [
        [
            "1 worker (model.fit)",
            common.median([steady(r["images_per_second_1_worker"]) for r in rounds]),
            1.0,
            1000 * m["step_seconds_1_worker"],
            m["train_seconds_1_worker"],
            m["cpu_seconds_per_1k_images_1_worker"],
            "baseline",
        ],
        [
            "2 workers (fit_across_workers)",
            common.median([steady(r["images_per_second_2_workers"]) for r in rounds]),
            speed_up,
            1000 * m["step_seconds_2_workers"],
            m["train_seconds_2_workers"],
            m["cpu_seconds_per_1k_images_2_workers"],
            f">= {TARGET_SPEED_UP}x: {verdict(speed_up >= TARGET_SPEED_UP)}",
        ],
    ]
    print(
        common.table(
            [
                "variant",
                "images/s",
                "ratio",
                "ms per step",
                "train s (all epochs)",
                "CPU s / 1k img",
                "target",
            ],
            rows_scaling,
        )
    )
    print(
        f"  first epoch ratio {m['speed_up_first_epoch']:.3f}; whole-training wall-time ratio "
        f"{m['speed_up_train_seconds']:.3f}; CPU per image 2 workers / 1 worker "
        f"{m['cpu_seconds_per_1k_images_2_workers'] / m['cpu_seconds_per_1k_images_1_worker']:.3f}"
    )

    common.section("all-reduce across the 2 workers (loopback), against a training step of the 2 workers")
    kb = m["allreduce_gradient_bytes"] / 1000
    rows_allreduce: list[list[object]] = [
        [
            f"convnet gradient: {rounds[0]['allreduce_gradient_tensors']} tensors, {kb:.0f} KB",
            1000 * m["allreduce_gradient_seconds"],
            m["allreduce_share_of_step"],
        ],
        [
            "one float32 (latency floor)",
            1000 * m["allreduce_one_float_seconds"],
            m["allreduce_one_float_seconds"] / m["step_seconds_2_workers"],
        ],
        [
            "eager next() of the distributed training data (one per step)",
            1000 * m["next_batch_seconds"],
            m["next_batch_share_of_step"],
        ],
        ["training step, 2 workers (global batch)", 1000 * m["step_seconds_2_workers"], 1.0],
        [
            "training step, 1 worker, for scale",
            1000 * m["step_seconds_1_worker"],
            m["step_seconds_1_worker"] / m["step_seconds_2_workers"],
        ],
    ]
    print(common.table(["what", "ms per call", "share of a 2-worker step"], rows_allreduce))
    transfer = m["allreduce_gradient_seconds"] - m["allreduce_one_float_seconds"]
    if transfer > 0:
        print(
            f"  gradient all-reduce beyond the latency floor: {1000 * transfer:.2f} ms, "
            f"{m['allreduce_gradient_bytes'] / transfer / 1e9:.2f} GB/s effective for the ring's 2(N-1)/N x {kb:.0f} KB"
        )
    return [
        ["weights worker 0 vs 1, max |diff|", worst_weights, verdict(worst_weights == 0)],
        ["test accuracy gap 2 vs 1 worker", worst_gap, verdict(worst_gap <= TARGET_ACCURACY_GAP)],
        ["speed-up, images/s 2x1 vs 1x1 thread", speed_up, verdict(speed_up >= TARGET_SPEED_UP)],
        ["all-reduce share of a 2-worker step", m["allreduce_share_of_step"], "reported"],
        ["eager next() share of a 2-worker step", m["next_batch_share_of_step"], "reported"],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.distributed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--epochs", type=int, default=2, help="per variant (default 2)")
    parser.add_argument("--train-images", type=int, default=60_000, help="of Fashion-MNIST's 60,000")
    parser.add_argument(
        "--batch-size", type=int, default=_SPEC.batch_size, help="the GLOBAL batch (spec default)"
    )
    parser.add_argument("--threads", type=int, default=1, help="intra- and inter-op threads per worker")
    parser.add_argument("--rounds", type=int, default=1, help="repeat both variants, alternating the order")
    parser.add_argument("--allreduce-calls", type=int, default=400, help="timed all-reduce calls per payload")
    parser.add_argument(
        "--validation-split", type=float, default=0.0, help="0: every image trains, epochs time training only"
    )
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--data-dir", type=Path, default=common.FASHION_MNIST_DIR)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per variant before it is killed")
    parser.add_argument("--keep", action="store_true", help="keep the workers' folders (logs, weights)")
    parser.add_argument("--json", type=Path, help="results file (default bench/results/distributed.json)")
    # A worker process of the benchmark, started by it; not for users.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--hosts", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
        return

    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    common.section(
        f"Fashion-MNIST, {min(args.train_images, 60_000):,} training images (validation split "
        f"{args.validation_split}), {args.epochs} epochs, global batch {args.batch_size}, seed {args.seed}, "
        f"{args.threads} thread(s) per worker, {args.rounds} round(s); workers' folders in {root}"
    )
    variants = []
    try:
        for round_index in range(args.rounds):
            for workers in common.rotated(WORKER_COUNTS, round_index):
                variant = run_variant(args, workers, round_index, root)
                rates = variant.result(0)["images_per_second"]
                print(
                    f"  round {round_index + 1}: {workers} worker(s) done in {variant.seconds:.1f}s; images/s "
                    f"per epoch {', '.join(f'{r:,.0f}' for r in rates)}",
                    flush=True,
                )
                variants.append(variant)
        summary = summarise(args, variants)
        verdicts = report(args, summary)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    settings = {
        k: str(v) if isinstance(v, Path) else v
        for k, v in vars(args).items()
        if k not in ("worker", "out", "workers", "hosts", "json")
    }
    payload = {
        "settings": settings,
        "targets": {
            "speed_up": TARGET_SPEED_UP,
            "test_accuracy_gap": TARGET_ACCURACY_GAP,
            "weights_max_abs_difference": 0,
        },
        "verdicts": {"headers": ["figure", "value", "verdict"], "rows": verdicts},
        **summary,
        "wall_seconds": time.monotonic() - started,
    }
    path = common.write_results("distributed", payload, args.json)
    print(f"\n{payload['wall_seconds']:.0f}s; results in {path}")


if __name__ == "__main__":
    main()

"""Close to the hardware: the zoo's convnet's achieved training GFLOP/s against this CPU's fp32 peak, under
the TensorFlow thread and oneDNN settings that matter.

Method:

1. **FLOPs of one training step**, counted analytically per layer (``step_flops``): a convolution or dense
   layer's forward pass is ``outputs x kernel volume`` multiply-adds, 2 FLOPs each; the backward pass is
   one more such product for the weight gradient and one for the input gradient, except the first
   convolution, whose input (the image) needs no gradient. Bias adds, ReLU, max-pooling, softmax, the loss
   and Adam's update are O(activations or weights) and are left out (they are listed apart: under 2 % of
   the step). Cross-check: TensorFlow's own graph profiler (``tf.compat.v1.profiler``, float_operation) on
   the concrete graph of one train step; it counts forward convolutions and matmuls (and, in this TF,
   whatever backward kernels have a registered FLOP statistic), so it is printed next to ours, not used.
2. **Peak.** Theoretical: cores x clock x FLOPs/cycle. The CPU says ``AMD EPYC`` family 25 model 17: Zen 4
   (Genoa), whose AVX-512 runs on two 256-bit FMA pipes (each 512-bit instruction takes two passes): 2 x 8
   lanes x 2 = 32 fp32 FLOP/cycle per core, the same as AVX2. The brief's 64 FLOP/cycle (two 512-bit FMA
   units, as on Intel Xeon Gold/Platinum) is printed too, since "about 30 %" was judged against it. Clock:
   /proc/cpuinfo's MHz (the TSC under KVM; the real clock may boost above it). Practical: a 2048 x 2048 @
   2048 x 2048 fp32 ``tf.linalg.matmul`` (oneDNN/Eigen GEMM) measured in the same subprocess with the same
   thread settings as the convnet: the convnet's GFLOP/s over that is the baseline-in-the-same-run ratio.
3. **Variants**, each a fresh subprocess (threads and ``TF_ENABLE_ONEDNN_OPTS`` are read when TensorFlow
   starts): the product's path, ``build_model("convnet")`` compiled as ``pipeline.build_compiled_model``
   does (adam 0.001, sparse categorical cross-entropy, accuracy), ``model.fit`` on ``inputs.to_dataset``
   batches of real Fashion-MNIST, one untimed warm-up epoch then ``--rounds`` timed epochs (median).
   Variants: TF's default threads at the spec's batch size; batch 64; intra-op 1 / inter-op 1; oneDNN
   off; batch 256; XLA ``jit_compile=True`` (``--variants`` also takes intra2, onednn1,
   intra2-batch256). Each subprocess measures the matmul before and after its epochs.
4. **Where the time goes** (the spec's batch size, default settings): one more epoch under
   ``tf.profiler.experimental`` (a host trace), its ops' times summed by op type from the XSpace file:
   the convolution kernels against the small ops, their summed time against the wall time, and the
   GFLOP/s of the convolution and matmul kernels while they run.

    python -m bench.hardware [--images 12000] [--rounds 3] \\
        [--variants default,batch64,intra1,onednn0,batch256,xla] [--no-profile]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# First: _common sets TensorFlow's logging and device variables before TensorFlow is imported.
from bench import _common as common

# isort: split
import keras
import tensorflow as tf

from mnist_api.spec import MnistTrainingSpec
from mnist_trainer.datasets import MnistData
from mnist_trainer.inputs import split_train_validation, to_dataset
from mnist_trainer.models import build_model, make_optimizer

SEED = 42
MATMUL_N = 2048
BRIEF_FLOPS_PER_CYCLE = 64  # two 512-bit FMA units x 16 lanes x 2
ZEN4_FLOPS_PER_CYCLE = 32  # Zen 4: AVX-512 on two 256-bit FMA pipes, 2 x 8 lanes x 2
SPEC_BATCH = MnistTrainingSpec().batch_size  # the "default" variant trains as the spec's default does

# name: (environment, worker settings)
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {"env": {}, "intra": 0, "inter": 0, "batch": SPEC_BATCH, "jit": False},
    "batch64": {"env": {}, "intra": 0, "inter": 0, "batch": 64, "jit": False},
    "intra2": {"env": {}, "intra": 2, "inter": 1, "batch": SPEC_BATCH, "jit": False},
    "intra1": {"env": {}, "intra": 1, "inter": 1, "batch": SPEC_BATCH, "jit": False},
    "onednn0": {
        "env": {"TF_ENABLE_ONEDNN_OPTS": "0"},
        "intra": 0,
        "inter": 0,
        "batch": SPEC_BATCH,
        "jit": False,
    },
    "onednn1": {
        "env": {"TF_ENABLE_ONEDNN_OPTS": "1"},
        "intra": 0,
        "inter": 0,
        "batch": SPEC_BATCH,
        "jit": False,
    },
    "batch256": {"env": {}, "intra": 0, "inter": 0, "batch": 256, "jit": False},
    "intra2-batch256": {"env": {}, "intra": 2, "inter": 1, "batch": 256, "jit": False},
    "xla": {"env": {}, "intra": 0, "inter": 0, "batch": SPEC_BATCH, "jit": True},
}
DEFAULT_VARIANTS = "default,batch64,intra1,onednn0,batch256,xla"


# -- 1. FLOPs ----------------------------------------------------------------------------------------
def layer_macs(model: keras.Model) -> list[dict[str, Any]]:
    """Forward multiply-adds per image of each Conv2D and Dense layer, from the built model's shapes."""
    rows = []
    for index, layer in enumerate(
        layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)
    ):
        out = layer.output.shape[1:]
        kernel = layer.kernel.shape
        if isinstance(layer, keras.layers.Conv2D):
            # outputs (h x w x filters) x kernel volume (kh x kw x in channels)
            macs = out[0] * out[1] * out[2] * kernel[0] * kernel[1] * kernel[2]
        else:
            macs = kernel[0] * kernel[1]
        rows.append(
            {
                "layer": layer.name,
                "output": list(out),
                "kernel": list(kernel),
                "forward_macs": int(macs),
                # weight gradient: one product of the same size; input gradient: another, except for the
                # first layer (its input is the image, which needs no gradient)
                "training_macs": int(macs * (2 if index == 0 else 3)),
            }
        )
    return rows


def elementwise_flops(model: keras.Model) -> int:
    """A generous count of what ``layer_macs`` leaves out, per image: a few FLOPs per activation (bias,
    ReLU, pooling, their gradients) and about 10 per weight (gradient sum, Adam)."""
    activations = sum(int(tf.reduce_prod(layer.output.shape[1:])) for layer in model.layers[1:])
    return 6 * activations + 10 * model.count_params() // 64


def profiler_flops(model: keras.Model, batch: int) -> dict[str, Any]:
    """TensorFlow's graph profiler's FLOP count of one train step (forward, tape gradient, no optimizer)."""
    try:
        loss_fn = keras.losses.SparseCategoricalCrossentropy()

        @tf.function
        def step(x: tf.Tensor, y: tf.Tensor) -> list[tf.Tensor]:
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            return tape.gradient(loss, model.trainable_variables)

        graph = step.get_concrete_function(
            tf.TensorSpec([batch, 28, 28], tf.float32), tf.TensorSpec([batch], tf.int32)
        ).graph
        options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        report = tf.compat.v1.profiler.profile(graph, options=options)
        by_node = {
            child.name: int(child.total_float_ops) for child in report.children if child.total_float_ops
        }
        return {"total": int(report.total_float_ops), "by_node": by_node}
    except Exception as error:  # a cross-check only: report why it is missing
        return {"total": None, "error": f"{type(error).__name__}: {error}"}


# -- worker: one variant in a fresh process -----------------------------------------------------------
def matmul_gflops(seconds: float = 2.0) -> float:
    a = tf.random.uniform([MATMUL_N, MATMUL_N], seed=1)
    b = tf.random.uniform([MATMUL_N, MATMUL_N], seed=2)
    matmul = tf.function(lambda: tf.linalg.matmul(a, b))
    matmul().numpy()  # warm
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or done < 3:
        matmul().numpy()
        done += 1
    return 2 * MATMUL_N**3 * done / (time.perf_counter() - started) / 1e9


class EpochTimer(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._started)


def compiled_convnet(jit: bool) -> keras.Model:
    """As ``pipeline.build_compiled_model`` compiles the spec default (adam, lr 0.001)."""
    keras.utils.set_random_seed(SEED)
    model = build_model("convnet")
    model.compile(
        optimizer=make_optimizer("adam", 0.001),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit,
    )
    return model


def training_data(args: argparse.Namespace) -> Any:
    arrays = common.load_fashion_mnist(args.data_dir)
    n = min(round(args.images / 0.9), len(arrays["x_train"]))
    data = MnistData(arrays["x_train"][:n], arrays["y_train"][:n], arrays["x_test"], arrays["y_test"])
    return split_train_validation(data, 0.1, SEED)


def trace_profile(model: keras.Model, dataset: tf.data.Dataset, epoch_seconds: float) -> dict[str, Any]:
    """One more epoch under ``tf.profiler.experimental`` (a host trace); the XSpace file is read with
    TensorFlow's own proto: each TF op's event on the executor threads (``tf_Compute``), summed by op
    type. Durations are per op on its inter-op thread (oneDNN's own parallelism inside an op is not
    split out), so the shares are of the summed op time, next to the epoch's wall time."""
    import collections
    import tempfile

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        started = time.perf_counter()
        model.fit(dataset, epochs=1, verbose=0, shuffle=False)
        wall = time.perf_counter() - started
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(next(Path(logdir).rglob("*.xplane.pb")).read_bytes())
    by_type: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" not in name or "::" in name:  # executor bookkeeping, not an op
                    continue
                op_type = name.rsplit(":", 1)[1]
                by_type[op_type] += event.duration_ps
                calls[op_type] += 1
    return {
        "traced_epoch_wall_seconds": wall,
        "untraced_epoch_wall_seconds": epoch_seconds,
        "op_seconds_by_type": {k: v / 1e12 for k, v in by_type.most_common()},
        "op_calls_by_type": dict(calls),
    }


def worker(settings: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    if settings["intra"]:
        tf.config.threading.set_intra_op_parallelism_threads(settings["intra"])
    if settings["inter"]:
        tf.config.threading.set_inter_op_parallelism_threads(settings["inter"])
    splits = training_data(args)
    matmul_before = matmul_gflops()
    model = compiled_convnet(settings["jit"])
    dataset = to_dataset(splits.x_train, splits.y_train, settings["batch"], shuffle_seed=SEED)
    timer = EpochTimer()
    model.fit(dataset, epochs=1 + args.rounds, callbacks=[timer], verbose=0, shuffle=False)
    matmul_after = matmul_gflops()
    result: dict[str, Any] = {
        "images": len(splits.x_train),
        "steps_per_epoch": -(-len(splits.x_train) // settings["batch"]),
        "first_epoch_seconds": timer.seconds[0],
        "epoch_seconds": timer.seconds[1:],
        "matmul_gflops": [matmul_before, matmul_after],
        "threads_seen": {
            "intra": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter": tf.config.threading.get_inter_op_parallelism_threads(),
        },
    }
    if settings.get("profile"):
        result["trace"] = trace_profile(model, dataset, common.median(result["epoch_seconds"]))
        result["profiler_flops"] = profiler_flops(model, settings["batch"])
    return result


def run_variant(name: str, settings: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, **settings["env"]}
    command = [
        sys.executable, "-m", "bench.hardware", "--worker", json.dumps(settings),
        "--images", str(args.images), "--rounds", str(args.rounds), "--data-dir", str(args.data_dir),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=common.REPO_ROOT, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"variant {name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def clock_mhz() -> float:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":", 1)[1])
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hardware",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--images", type=int, default=12_000, help="training images per epoch (max 54000)")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs per variant, after one warm-up")
    parser.add_argument(
        "--variants", default=DEFAULT_VARIANTS, help=f"comma-separated, of {','.join(VARIANTS)}"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip section 4 (per-layer timings)")
    parser.add_argument("--data-dir", type=Path, default=common.FASHION_MNIST_DIR)
    parser.add_argument("--json", type=Path, help="results file (default bench/results/hardware.json)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker), args)), flush=True)
        return
    names = args.variants.split(",")
    unknown = set(names) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")
    started = time.monotonic()

    common.section("1. FLOPs of one training step (convnet)")
    model = build_model("convnet")
    rows = layer_macs(model)
    train_per_image = 2 * sum(r["training_macs"] for r in rows)
    forward_per_image = 2 * sum(r["forward_macs"] for r in rows)
    extra_per_image = elementwise_flops(model)
    print(f"  {model.count_params():,} parameters")
    print(
        common.table(
            ["layer", "output", "forward MFLOP/image", "training MFLOP/image"],
            [[r["layer"], "x".join(map(str, r["output"])), 2 * r["forward_macs"] / 1e6, 2 * r["training_macs"] / 1e6]
             for r in rows],
        )
    )  # fmt: skip
    print(
        f"  forward {forward_per_image / 1e6:.3f} MFLOP/image, training step {train_per_image / 1e6:.3f} "
        f"MFLOP/image = {SPEC_BATCH * train_per_image / 1e9:.3f} GFLOP per batch-{SPEC_BATCH} step; left "
        f"out (elementwise, Adam): <= {extra_per_image / 1e6:.3f} MFLOP/image "
        f"({100 * extra_per_image / train_per_image:.1f} %)"
    )

    mhz, cores = clock_mhz(), os.cpu_count() or 1
    peak_zen4 = cores * mhz * 1e6 * ZEN4_FLOPS_PER_CYCLE / 1e9
    peak_brief = cores * mhz * 1e6 * BRIEF_FLOPS_PER_CYCLE / 1e9
    common.section("2. peak")
    print(
        f"  {cores} cores x {mhz:.0f} MHz x {ZEN4_FLOPS_PER_CYCLE} FLOP/cycle (Zen 4) = {peak_zen4:.0f} GFLOP/s; "
        f"x {BRIEF_FLOPS_PER_CYCLE} (two 512-bit FMA units) = {peak_brief:.0f} GFLOP/s"
    )

    common.section(
        f"3. variants ({args.images:,} images/epoch, {args.rounds} timed epochs each, fresh process)"
    )
    results: dict[str, Any] = {}
    table_rows = []
    for name in names:
        settings = dict(VARIANTS[name], profile=(name == "default" and not args.no_profile))
        result = run_variant(name, settings, args)
        epoch = common.median(result["epoch_seconds"])
        images_s = result["images"] / epoch
        gflops = images_s * train_per_image / 1e9
        matmul = common.median(result["matmul_gflops"])
        result.update(
            settings=settings,
            images_per_second=images_s,
            steps_per_second=result["steps_per_epoch"] / epoch,
            gflops=gflops,
            share_of_peak_zen4=gflops / peak_zen4,
            share_of_peak_brief=gflops / peak_brief,
            share_of_matmul=gflops / matmul,
        )
        results[name] = result
        table_rows.append(
            [name, settings["batch"], images_s, result["steps_per_epoch"] / epoch, gflops, matmul,
             f"{100 * gflops / matmul:.1f}%", f"{100 * gflops / peak_zen4:.1f}%", f"{100 * gflops / peak_brief:.1f}%"]
        )  # fmt: skip
        print(
            f"  {name}: {images_s:,.0f} images/s, {gflops:.1f} GFLOP/s, matmul {matmul:.1f} GFLOP/s",
            flush=True,
        )
    headers = ["variant", "batch", "images/s", "steps/s", "GFLOP/s", "matmul GFLOP/s", "of matmul",
               "of peak (32/cyc)", "of peak (64/cyc)"]  # fmt: skip
    print(common.table(headers, table_rows))
    best = max(results, key=lambda n: results[n]["gflops"])
    print(
        f"  best: {best}, {results[best]['gflops']:.1f} GFLOP/s = {100 * results[best]['share_of_peak_zen4']:.1f} % "
        f"of the Zen 4 peak, {100 * results[best]['share_of_peak_brief']:.1f} % of the 64 FLOP/cycle peak, "
        f"{100 * results[best]['share_of_matmul']:.1f} % of the measured matmul"
    )

    profile: dict[str, Any] = {}
    if "default" in results and "trace" in results["default"]:
        common.section(f"4. where the time goes (batch {SPEC_BATCH}, default settings, one traced epoch)")
        default = results["default"]
        trace = default["trace"]
        steps = default["steps_per_epoch"]
        op_seconds = trace["op_seconds_by_type"]
        total = sum(op_seconds.values())
        heavy = {k: v for k, v in op_seconds.items() if "Conv2D" in k or "MatMul" in k}
        heavy_s = sum(heavy.values())
        prof_rows = [
            [op, trace["op_calls_by_type"][op] // steps, 1000 * sec / steps, f"{100 * sec / total:.0f}%"]
            for op, sec in list(op_seconds.items())[:12]
        ]
        rest = sum(list(op_seconds.values())[12:])
        prof_rows.append(
            [f"{len(op_seconds) - 12} other op types", "", 1000 * rest / steps, f"{100 * rest / total:.0f}%"]
        )
        print(common.table(["op type", "calls/step", "op ms/step", "share of op time"], prof_rows))
        kernel_gflops = steps * SPEC_BATCH * train_per_image / heavy_s / 1e9
        wall_ms = 1000 * trace["traced_epoch_wall_seconds"] / steps
        print(
            f"  convolution and matmul kernels: {100 * heavy_s / total:.0f} % of the summed op time, "
            f"{1000 * heavy_s / steps:.1f} ms/step, i.e. {kernel_gflops:.1f} GFLOP/s while they run "
            f"({100 * kernel_gflops / peak_zen4:.0f} % of the Zen 4 peak); all ops {1000 * total / steps:.1f} "
            f"ms/step of op time (2 inter-op threads may overlap) against {wall_ms:.1f} ms/step wall (traced)"
        )
        pf = default["profiler_flops"]
        if pf.get("total"):
            print(
                f"  tf.compat.v1.profiler: {pf['total'] / 1e9:.3f} GFLOP per batch-{SPEC_BATCH} step (forward + "
                f"gradients, no optimizer) against {SPEC_BATCH * train_per_image / 1e9:.3f} counted here"
            )
        else:
            print(f"  tf.compat.v1.profiler: no count ({pf.get('error')})")
        profile = {
            "op_ms_per_step": {k: 1000 * v / steps for k, v in op_seconds.items()},
            "conv_matmul_share_of_op_time": heavy_s / total,
            "conv_matmul_kernel_gflops": kernel_gflops,
            "traced_wall_ms_per_step": wall_ms,
            "table": prof_rows,
        }

    payload = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("data_dir", "json", "worker")},
        "flops": {
            "layers": rows,
            "forward_flops_per_image": forward_per_image,
            "training_flops_per_image": train_per_image,
            "spec_batch": SPEC_BATCH,
            "training_gflop_per_spec_batch_step": SPEC_BATCH * train_per_image / 1e9,
            "elementwise_flops_per_image_upper_bound": extra_per_image,
        },
        "peak": {
            "cores": cores,
            "clock_mhz": mhz,
            "zen4_flops_per_cycle": ZEN4_FLOPS_PER_CYCLE,
            "zen4_gflops": peak_zen4,
            "brief_flops_per_cycle": BRIEF_FLOPS_PER_CYCLE,
            "brief_gflops": peak_brief,
        },
        "variants": results,
        "best": best,
        "table": {"headers": headers, "rows": table_rows},
        "profile": profile,
        "wall_seconds": time.monotonic() - started,
    }
    path = common.write_results("hardware", payload, args.json)
    print(f"\n{payload['wall_seconds']:.0f}s; results in {path}")


if __name__ == "__main__":
    main()

"""Data-parallel training: many devices in one pod, many workers across pods.

``start_cluster`` picks the ``tf.distribute`` strategy a run trains under, before TensorFlow runs any op:

- one worker, one device: none (Keras' default), exactly the single-device path as before;
- one worker, several GPUs (``spec.resources.gpus > 1``), or the CPU split into logical devices
  (``MNIST_CPU_REPLICAS``, the same path without GPUs): ``MirroredStrategy``, and Keras' own ``fit``;
- several workers (``spec.workers > 1``): ``MultiWorkerMirroredStrategy`` over the cluster that
  ``TF_CONFIG`` describes, built from the workers' addresses and this pod's completion index
  (``mnist_api.distribution``), and the loop below instead of ``fit``.

Why a loop of our own: Keras 3's ``fit`` fails under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585:
its first symbolic build reduces a batch of distributed values as if it were one value, and later steps
fail the same way; measured with Keras 3.15 and TensorFlow 2.21, docs/distributed.md). The loop is
TensorFlow's documented custom training loop for that strategy, driving the very same Keras callbacks,
in the order and with the arguments ``fit`` calls them, so resume, history, checkpoints, progress lines
and metrics behave the same as a single worker's.
"""

import contextlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from mnist_api.distribution import TF_CONFIG_ENV, is_chief, tf_config_json, worker_index
from mnist_api.env import TrainerConfig

from .errors import ConfigInvalidError, WorkerLostError

log = logging.getLogger(__name__)

# What TensorFlow raises in a collective when a peer is gone: its heartbeat stopped (Unavailable), the
# coordination service aborted the collectives (Aborted, Cancelled), or the wait ran out (DeadlineExceeded).
PEER_LOST_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.AbortedError,
    tf.errors.CancelledError,
    tf.errors.DeadlineExceededError,
)


@dataclass(frozen=True)
class Cluster:
    """Where this process trains: its strategy (None: Keras' default, one device), and its place."""

    strategy: tf.distribute.Strategy | None
    index: int = 0
    workers: int = 1

    @property
    def is_chief(self) -> bool:
        """The worker that pushes metrics, checkpoints and exports; the only one of a single worker."""
        return is_chief(self.index)

    @property
    def replicas(self) -> int:
        """Devices training in sync, over every worker."""
        return int(self.strategy.num_replicas_in_sync) if self.strategy is not None else 1

    @property
    def across_workers(self) -> bool:
        return self.workers > 1


def start_cluster(config: TrainerConfig, environ: Mapping[str, str]) -> Cluster:
    """The run's strategy; call it before TensorFlow runs any op (devices are fixed at the first one)."""
    if config.cpu_replicas > 1:
        split_cpu(config.cpu_replicas)
    if config.workers > 1:
        try:
            index = worker_index(environ, config.workers)
        except ValueError as error:
            raise ConfigInvalidError(str(error)) from None
        # The strategy reads TF_CONFIG from the environment, as every TensorFlow tool does.
        os.environ[TF_CONFIG_ENV] = tf_config_json(config.worker_hosts, index)
        log.info(
            "worker %d of %d (%s); waiting for every worker to join: %s",
            index,
            config.workers,
            "the chief" if is_chief(index) else "not the chief",
            ", ".join(config.worker_hosts),
        )
        strategy: tf.distribute.Strategy = tf.distribute.MultiWorkerMirroredStrategy()
        log.info("all %d workers joined: %d replicas in sync", config.workers, strategy.num_replicas_in_sync)
        return Cluster(strategy, index, config.workers)
    devices = local_devices()
    if len(devices) > 1:
        strategy = tf.distribute.MirroredStrategy(devices)
        log.info("training mirrored over %d devices: %s", len(devices), ", ".join(devices))
        return Cluster(strategy)
    return Cluster(None)


def strategy_scope(cluster: Cluster) -> contextlib.AbstractContextManager[Any]:
    """Where the model and its optimizer must be built: the strategy's scope, if there is one."""
    return cluster.strategy.scope() if cluster.strategy is not None else contextlib.nullcontext()


def split_cpu(replicas: int) -> None:
    """Split the CPU into ``replicas`` logical devices, for ``MirroredStrategy`` without GPUs."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)


def local_devices() -> list[str]:
    """The devices one worker mirrors over: its GPUs, else its logical CPUs (one, unless split)."""
    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Every worker reads the whole (seeded, identically shuffled) dataset and keeps its share of each
    batch: the data are in memory, so there are no files to shard by, and every global batch is what
    one worker would have trained on."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def per_example_loss(loss: str | keras.losses.Loss) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """The compiled loss, one value per image: the replicas sum them and divide by the global batch."""
    if isinstance(loss, keras.losses.Loss):
        return loss.call  # type: ignore[no-any-return]
    function = keras.losses.get(loss)
    if isinstance(function, keras.losses.Loss):
        return function.call  # type: ignore[no-any-return]
    return function  # type: ignore[no-any-return]


def fit_across_workers(
    model: keras.Model,
    cluster: Cluster,
    train: tf.data.Dataset,
    validation: tf.data.Dataset | None,
    *,
    epochs: int,
    steps_per_epoch: int,
    validation_steps: int,
    callbacks: Sequence[keras.callbacks.Callback],
) -> None:
    """``model.fit(train, validation_data=validation, epochs=epochs, callbacks=callbacks)`` under
    ``MultiWorkerMirroredStrategy``. ``train`` is batched with the global batch size: the strategy gives
    each worker its share of every batch; ``steps_per_epoch`` and ``validation_steps`` are their batches.
    A lost peer raises ``WorkerLostError``."""
    try:
        _Loop(model, cluster, train, validation).fit(epochs, steps_per_epoch, validation_steps, callbacks)
    except PEER_LOST_ERRORS as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WorkerLostError(
            f"worker {cluster.index} lost its peers mid-step ({type(error).__name__}: {first_line}); every "
            "worker restarts and resumes from the last finished epoch"
        ) from None


class _Loop:
    """The training and validation steps, compiled once, and the epoch loop that calls the callbacks."""

    def __init__(
        self,
        model: keras.Model,
        cluster: Cluster,
        train: tf.data.Dataset,
        validation: tf.data.Dataset | None,
    ) -> None:
        assert cluster.strategy is not None
        self.model, self.strategy, self.cluster = model, cluster.strategy, cluster
        self.loss = per_example_loss(model.loss)
        with self.strategy.scope():
            # Metric variables created in the scope are summed across every replica of every worker
            # when read, so each worker's logs hold the same, global figures (and EarlyStopping, which
            # reads them, stops every worker at the same epoch).
            self.train_loss = keras.metrics.Mean(name="loss")
            self.train_accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
            self.val_loss = keras.metrics.Mean(name="val_loss")
            self.val_accuracy = keras.metrics.SparseCategoricalAccuracy(name="val_accuracy")
            model.optimizer.build(model.trainable_variables)
        # Repeated, and read a known number of batches per epoch: at the end of a finite distributed
        # dataset every worker must agree that all of them ran out, and TensorFlow asks every worker so
        # at every batch (a collective per step, a quarter of the step's time in bench/distributed.py).
        # Batched before repeating, so each epoch's batches are exactly one pass, reshuffled each time.
        self.train = self.strategy.experimental_distribute_dataset(train.repeat())
        self.validation = (
            self.strategy.experimental_distribute_dataset(validation.repeat())
            if validation is not None
            else None
        )

    def fit(
        self,
        epochs: int,
        steps_per_epoch: int,
        validation_steps: int,
        callbacks: Sequence[keras.callbacks.Callback],
    ) -> None:
        model = self.model
        callback_list = keras.callbacks.CallbackList(
            list(callbacks), model=model, epochs=epochs, steps=steps_per_epoch
        )
        model.stop_training = False
        callback_list.on_train_begin()
        # The chief's BackupAndRestore has restored the last finished epoch's weights, and left the epoch
        # to resume at where Keras' own fit reads it; every other worker takes both from the chief.
        first_epoch = self._take_the_chiefs_state(getattr(model, "_initial_epoch", None) or 0)
        model._initial_epoch = first_epoch  # what fit would have used: ProgressLog reads it too
        logs: dict[str, Any] = {}
        batches = iter(self.train)
        validation_batches = iter(self.validation) if self.validation is not None else None
        for epoch in range(first_epoch, epochs):
            for metric in (self.train_loss, self.train_accuracy, self.val_loss, self.val_accuracy):
                metric.reset_state()
            callback_list.on_epoch_begin(epoch)
            for step in range(steps_per_epoch):
                callback_list.on_train_batch_begin(step)
                self._train_step(next(batches))
                # No figures per batch: reading the summed metrics is a collective every worker must
                # join at the same step, and progress lines come at each worker's own time.
                callback_list.on_train_batch_end(step, {})
                if model.stop_training:
                    # A stop request (SafeStop), on which fit's own loop breaks too. The half-trained
                    # epoch reaches neither on_epoch_end nor a collective the other workers may not
                    # join (its figures, the validation); SafeStop raises in on_train_end.
                    callback_list.on_train_end(logs)
                    return
            logs = {"loss": self.train_loss.result(), "accuracy": self.train_accuracy.result()}
            if validation_batches is not None:
                for _ in range(validation_steps):
                    self._validation_step(next(validation_batches))
                logs |= {"val_loss": self.val_loss.result(), "val_accuracy": self.val_accuracy.result()}
            logs = {key: float(value) for key, value in logs.items()}
            callback_list.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        callback_list.on_train_end(logs)

    def _take_the_chiefs_state(self, first_epoch: int) -> int:
        """Give every worker the chief's weights and first epoch; returns the epoch to resume at.

        Only the chief reads the run's backup (the others may not even see its volume: an emptyDir, or
        a claim not yet synced), so after a restart the workers' weights differ until this runs. One
        all-reduce in which only the chief's replica contributes copies them; from then on every step
        applies the same summed gradients everywhere."""
        weights = [w for w in self.model.weights if "float" in str(w.dtype)]
        synced = self.strategy.experimental_local_results(self._from_chief(tf.constant(first_epoch)))[0]
        with self.strategy.scope():
            for weight, value in zip(weights, synced[:-1], strict=True):
                weight.assign(value)
        epoch = int(synced[-1])
        if not self.cluster.is_chief and epoch:
            log.info("resuming at epoch %d from the chief's backup", epoch + 1)
        return epoch

    @tf.function  # type: ignore[untyped-decorator]
    def _from_chief(self, first_epoch: tf.Tensor) -> Any:
        weights = [w for w in self.model.weights if "float" in str(w.dtype)]

        def replica_fn(epoch: tf.Tensor) -> Any:
            context = tf.distribute.get_replica_context()
            only_chief = tf.equal(context.replica_id_in_sync_group, 0)
            values = [tf.where(only_chief, tf.identity(w), tf.zeros_like(w)) for w in weights]
            values.append(tf.where(only_chief, tf.cast(epoch, tf.float32), 0.0))
            return context.all_reduce(tf.distribute.ReduceOp.SUM, values)

        return self.strategy.run(replica_fn, args=(first_epoch,))

    @tf.function  # type: ignore[untyped-decorator]
    def _train_step(self, batch: Any) -> None:
        self.strategy.run(self._replica_train_step, args=batch)

    def _replica_train_step(self, images: tf.Tensor, labels: tf.Tensor) -> None:
        model = self.model
        with tf.GradientTape() as tape:
            scores = model(images, training=True)
            per_image = self.loss(labels, scores)
            # Divided by the global batch: the all-reduce sums the replicas' gradients, and the sum is
            # then the gradient of the batch's mean loss, as on one device.
            loss = tf.nn.compute_average_loss(per_image, global_batch_size=self._global_batch(images))
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        gradients = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        self.train_loss.update_state(per_image)
        self.train_accuracy.update_state(labels, scores)

    @tf.function  # type: ignore[untyped-decorator]
    def _validation_step(self, batch: Any) -> None:
        self.strategy.run(self._replica_validation_step, args=batch)

    def _replica_validation_step(self, images: tf.Tensor, labels: tf.Tensor) -> None:
        scores = self.model(images, training=False)
        self.val_loss.update_state(self.loss(labels, scores))
        self.val_accuracy.update_state(labels, scores)

    def _global_batch(self, images: tf.Tensor) -> tf.Tensor:
        # This replica's images times the replicas: the batch's size, the last (smaller) one's too. At
        # least 1: a last batch smaller than the replicas leaves some with no image (and a zero sum).
        return tf.maximum(tf.shape(images)[0] * self.strategy.num_replicas_in_sync, 1)

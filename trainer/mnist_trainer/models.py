"""The model zoo. Every model takes raw 28x28 uint8-range images and rescales them itself, so an exported
model serves raw pixels without a separate preprocessing step. Each entry names the loss it trains with:
its output is per-class scores whose argmax is the class, but not every model's scores are probabilities.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

import keras
from keras import layers

from mnist_api.spec import LearningRateScheduleName, LearningRateScheduleSpec

from .capsules import CapsuleLength, MarginLoss, RoutingCapsules, Squash

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)


def _inputs() -> tuple[keras.KerasTensor, keras.KerasTensor]:
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    x = layers.Reshape((*IMAGE_SHAPE, 1))(inputs)
    return inputs, layers.Rescaling(1.0 / 255)(x)


def convnet(num_classes: int = NUM_CLASSES) -> keras.Model:
    """The seeds' convnet (Chollet, Deep Learning with Python, 2nd ed., ch. 8): 104,202 parameters."""
    inputs, x = _inputs()
    x = layers.Conv2D(filters=32, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=64, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=128, kernel_size=3, activation="relu")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="convnet")


def mlp(num_classes: int = NUM_CLASSES) -> keras.Model:
    """One hidden layer of 64 units: 50,890 parameters, seconds per epoch on a CPU."""
    inputs, x = _inputs()
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mlp")


def capsnet(num_classes: int = NUM_CLASSES) -> keras.Model:
    """Sabour, Frosst and Hinton's capsule network ("Dynamic Routing Between Capsules", 2017) at half
    width, without the reconstruction decoder: 2,075,008 parameters. Train it with ``MarginLoss``.

    Conv 128 9x9 ReLU -> PrimaryCaps: 16 channels of 8-D capsules (a 9x9 stride-2 convolution, 6x6
    positions, 576 capsules, squashed) -> DigitCaps: ``num_classes`` 16-D capsules, 3 iterations of
    routing by agreement -> the capsules' lengths, one score in [0, 1) per class.

    The paper's net (256 filters, 32 primary channels, decoder) has 8.2M parameters, 6.8M without the
    decoder; a trained model.keras also holds Adam's two moments per weight, about 12 bytes a parameter,
    so even that is ~82 MB against the seeds' 30 MB limit. Halving the convolution and the primary
    channels keeps the architecture and fits: 2.08M parameters, ~25 MB trained, ~8 MB for the weights
    alone, and a quarter of the primary capsules' multiply-adds, which dominate the CPU time. The decoder
    is left out because its reconstruction loss needs the labels inside the model (to mask the capsules)
    and a second loss, which the pipeline's one-output, one-loss compile does not have; it is a
    regulariser, not part of the classifier (the paper's Table 1: 0.35% MNIST test error without it,
    0.25% with it).

    He initialisation (instead of Keras' Glorot) for the convolutions: Glorot's fan-out of 81 x 128 for
    a one-channel input starts the squashed primary capsules at lengths ~0.01 instead of ~0.7, and the
    class capsules at ~0, where the margin loss barely has a gradient.
    """
    inputs, x = _inputs()
    x = layers.Conv2D(128, kernel_size=9, activation="relu", kernel_initializer="he_normal")(x)
    x = layers.Conv2D(16 * 8, kernel_size=9, strides=2, kernel_initializer="he_normal")(x)
    x = layers.Reshape((-1, 8), name="primary_capsules")(x)  # each position's 16 channels of 8-D vectors
    x = Squash(name="primary_squash")(x)
    x = RoutingCapsules(num_classes, 16, routings=3, name="digit_capsules")(x)
    outputs = CapsuleLength(name="capsule_length")(x)
    return keras.Model(inputs, outputs, name="capsnet")


LossSpec: TypeAlias = str | keras.losses.Loss


@dataclass(frozen=True)
class ModelEntry:
    """A model of the zoo: how to build it for a class count, and the loss it trains with (a fresh one
    per call, so no two compiled models share a loss object)."""

    build: Callable[[int], keras.Model]
    loss: Callable[[], LossSpec]


def _crossentropy() -> LossSpec:
    return "sparse_categorical_crossentropy"


ZOO: dict[str, ModelEntry] = {
    "capsnet": ModelEntry(capsnet, MarginLoss),
    "convnet": ModelEntry(convnet, _crossentropy),
    "mlp": ModelEntry(mlp, _crossentropy),
}


def _entry(name: str) -> ModelEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; the zoo has {', '.join(sorted(ZOO))}") from None


def build_model(name: str, num_classes: int = NUM_CLASSES) -> keras.Model:
    """A new, uncompiled model of the zoo for images of ``num_classes`` classes."""
    return _entry(name).build(num_classes)


def loss_for(name: str) -> LossSpec:
    """The loss model ``name`` of the zoo trains with; every one takes sparse integer labels."""
    return _entry(name).loss()


LearningRate: TypeAlias = float | keras.optimizers.schedules.LearningRateSchedule


def learning_rate_over_run(
    peak: float, schedule: LearningRateScheduleSpec, *, epochs: int, steps_per_epoch: int
) -> LearningRate:
    """The spec's learning rate as the optimizer takes it: ``peak`` throughout, or a schedule over the
    run's ``epochs * steps_per_epoch`` steps. The schedule reads the optimizer's step counter, which the
    run's backup restores, so a resumed attempt continues the same curve."""
    if schedule.name == LearningRateScheduleName.CONSTANT:
        return peak
    total = epochs * steps_per_epoch
    # At least one step left to decay over: the spec keeps warm-up below the run, rounding might not.
    warmup = min(round(schedule.warmup_epochs * steps_per_epoch), total - 1)
    if warmup == 0:
        return keras.optimizers.schedules.CosineDecay(peak, decay_steps=total, alpha=0.0)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=total - warmup, alpha=0.0, warmup_target=peak, warmup_steps=warmup
    )


def make_optimizer(name: str, learning_rate: LearningRate) -> keras.optimizers.Optimizer:
    optimizers: dict[str, Callable[..., keras.optimizers.Optimizer]] = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "rmsprop": keras.optimizers.RMSprop,
        "sgd": keras.optimizers.SGD,
    }
    return optimizers[name](learning_rate=learning_rate)

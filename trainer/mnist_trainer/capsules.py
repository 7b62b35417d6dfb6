"""Capsule layers and the margin loss of Sabour, Frosst and Hinton, "Dynamic Routing Between Capsules"
(NIPS 2017), for the zoo's ``capsnet``.

Written with ``keras.ops`` only, so they run on any Keras backend. Every class is registered with Keras
under the package ``mnist_trainer`` and has a ``get_config``: ``keras.models.load_model`` rebuilds a saved
capsnet, its loss included, with no ``custom_objects``, once this module is imported (``models.py``
imports it, so anything that can build the zoo can load its files).
"""

from typing import Any

import keras
from keras import ops

# Keeps the norms' square roots (and their gradients) finite when a vector is all zeros.
EPSILON = 1e-7


def squash(vectors: Any, axis: int = -1) -> Any:
    """The paper's non-linearity (eq. 1): same direction, length ``|s|^2 / (1 + |s|^2)``, so short
    vectors shrink towards 0 and long ones approach length 1."""
    squared_norm = ops.sum(ops.square(vectors), axis=axis, keepdims=True)
    return vectors * (squared_norm / (1.0 + squared_norm)) / ops.sqrt(squared_norm + EPSILON)


@keras.saving.register_keras_serializable(package="mnist_trainer")
class Squash(keras.layers.Layer):  # type: ignore[misc]
    """``squash`` as a layer: turns the primary capsules' raw vectors into capsule outputs."""

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = axis

    def call(self, inputs: Any) -> Any:
        return squash(inputs, self.axis)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


@keras.saving.register_keras_serializable(package="mnist_trainer")
class RoutingCapsules(keras.layers.Layer):  # type: ignore[misc]
    """A fully connected capsule layer with routing by agreement (the paper's DigitCaps, procedure 1).

    Input ``(batch, input_capsules, input_dim)``, output ``(batch, capsules, capsule_dim)``. Each input
    capsule i predicts each output capsule j through its own matrix: ``u_hat[j|i] = W[i, j] u[i]``. The
    routing logits start at 0 for every image (so each input splits its vote evenly), and each of the
    ``routings`` iterations sets ``v[j] = squash(sum_i c[i, j] u_hat[j|i])`` with ``c = softmax_j(b)``,
    then raises ``b[i, j]`` by the agreement ``u_hat[j|i] . v[j]``. As in the paper, gradients flow
    through every iteration; the logits are not weights, they are recomputed per image.
    """

    def __init__(
        self,
        capsules: int,
        capsule_dim: int,
        routings: int = 3,
        kernel_initializer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if routings < 1:
            raise ValueError(f"routings must be at least 1, got {routings}")
        self.capsules = capsules
        self.capsule_dim = capsule_dim
        self.routings = routings
        # Glorot counts a 4-D kernel's fans as if it were a convolution's (tens of thousands), which starts
        # every output capsule at length ~0, where squash and the margin loss have almost no gradient.
        # N(0, 0.05) starts the zoo's capsnet near length m- = 0.1, where both have a useful slope.
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or keras.initializers.RandomNormal(stddev=0.05)
        )

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        _, input_capsules, input_dim = input_shape
        if input_capsules is None or input_dim is None:
            raise ValueError(
                f"RoutingCapsules needs a known number and size of input capsules: {input_shape}"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_capsules, self.capsules, self.capsule_dim, input_dim),
            initializer=self.kernel_initializer,
        )

    def call(self, inputs: Any) -> Any:
        # (batch, in, in_dim) -> predictions (batch, in, out, out_dim)
        predictions = ops.einsum("bni,nkdi->bnkd", inputs, self.kernel)
        logits = ops.zeros_like(predictions[..., 0])  # (batch, in, out)
        outputs = None
        for iteration in range(self.routings):
            coupling = ops.softmax(logits, axis=2)  # each input capsule's vote sums to 1 over the outputs
            outputs = squash(ops.einsum("bnk,bnkd->bkd", coupling, predictions))
            if iteration < self.routings - 1:  # the last iteration's agreement would not be used
                logits = logits + ops.einsum("bnkd,bkd->bnk", predictions, outputs)
        return outputs

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], self.capsules, self.capsule_dim)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "capsules": self.capsules,
            "capsule_dim": self.capsule_dim,
            "routings": self.routings,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


@keras.saving.register_keras_serializable(package="mnist_trainer")
class CapsuleLength(keras.layers.Layer):  # type: ignore[misc]
    """The length of each capsule, ``(batch, capsules, dim) -> (batch, capsules)``: the probability that
    the capsule's entity (here: the class) is present. Lengths lie in [0, 1) but do not sum to 1."""

    def call(self, inputs: Any) -> Any:
        return ops.sqrt(ops.sum(ops.square(inputs), axis=-1) + EPSILON)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape[:-1]


@keras.saving.register_keras_serializable(package="mnist_trainer")
class MarginLoss(keras.losses.Loss):  # type: ignore[misc]
    """The paper's margin loss (eq. 4) on capsule lengths, for sparse integer labels.

    Per image, summed over the classes k: ``T_k max(0, m+ - |v_k|)^2 + lambda (1 - T_k) max(0, |v_k| -
    m-)^2``, where ``T_k`` is 1 for the labelled class only. The present class's capsule is pushed above
    ``m_plus`` and the others below ``m_minus``; ``down_weight`` (lambda) keeps the many absent classes
    from shrinking every capsule early in training. Averaged over the batch like Keras' own losses.
    """

    def __init__(
        self,
        m_plus: float = 0.9,
        m_minus: float = 0.1,
        down_weight: float = 0.5,
        name: str = "margin_loss",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.m_plus = m_plus
        self.m_minus = m_minus
        self.down_weight = down_weight

    def call(self, y_true: Any, y_pred: Any) -> Any:
        # Labels come as (batch,) or (batch, 1), and Keras hands them over cast to the loss's float dtype.
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        present = ops.one_hot(labels, y_pred.shape[-1], dtype=y_pred.dtype)
        present_term = present * ops.square(ops.relu(self.m_plus - y_pred))
        absent_term = self.down_weight * (1.0 - present) * ops.square(ops.relu(y_pred - self.m_minus))
        return ops.sum(present_term + absent_term, axis=-1)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        return {**config, "m_plus": self.m_plus, "m_minus": self.m_minus, "down_weight": self.down_weight}

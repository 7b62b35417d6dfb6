"""The capsule layers against a NumPy transcription of the paper, and the margin loss on hand-computed
values."""

import keras
import numpy as np
import numpy.typing as npt
import pytest

from mnist_trainer.capsules import MarginLoss, RoutingCapsules, squash

Floats = npt.NDArray[np.float64]


def test_squash_keeps_the_direction_and_maps_length_s_to_s2_over_1_plus_s2() -> None:
    vectors = np.array([[0.0, 2.0], [0.3, -0.4], [0.0, 0.0]], np.float32)
    squashed = keras.ops.convert_to_numpy(squash(vectors))
    np.testing.assert_allclose(squashed[0], [0.0, 0.8], atol=1e-6)  # |s| = 2: 4 / 5
    np.testing.assert_allclose(squashed[1], np.array([0.3, -0.4]) * 0.25 / 1.25 / 0.5, atol=1e-6)
    np.testing.assert_array_equal(squashed[2], [0.0, 0.0])  # no NaN at the origin


def _routing_reference(u: Floats, weights: Floats, routings: int) -> Floats:
    """Procedure 1 of the paper, loop by loop, for one image: u (in, in_dim), W (in, out, out_dim, in_dim)."""
    u_hat = np.einsum("nkdi,ni->nkd", weights, u)
    b = np.zeros(u_hat.shape[:2])
    for _ in range(routings):
        c = np.exp(b) / np.exp(b).sum(axis=1, keepdims=True)
        s = (c[..., None] * u_hat).sum(axis=0)
        norm2 = (s**2).sum(axis=-1, keepdims=True)
        v: Floats = norm2 / (1 + norm2) * s / np.sqrt(norm2)
        b = b + (u_hat * v[None]).sum(axis=-1)
    return v


@pytest.mark.parametrize("routings", [1, 3])
def test_routing_by_agreement_matches_the_papers_procedure(routings: int) -> None:
    rng = np.random.default_rng(0)
    u = rng.normal(0, 0.5, size=(2, 12, 8))
    layer = RoutingCapsules(
        4, 6, routings=routings, kernel_initializer=keras.initializers.RandomNormal(0, 0.3)
    )
    got = keras.ops.convert_to_numpy(layer(u.astype(np.float32)))
    weights = keras.ops.convert_to_numpy(layer.kernel).astype(np.float64)
    want = np.stack([_routing_reference(image, weights, routings) for image in u])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_margin_loss_on_hand_computed_values() -> None:
    lengths = np.array([[0.95, 0.3, 0.05], [0.5, 0.1, 0.6]], np.float32)
    labels = np.array([0, 2])
    # image 0, class 0 present: 0.95 > m+ costs 0; absent 0.3: 0.5 (0.3 - 0.1)^2 = 0.02; absent 0.05: 0
    # image 1, class 2 present: (0.9 - 0.6)^2 = 0.09; absent 0.5: 0.5 (0.5 - 0.1)^2 = 0.08; absent 0.1: 0
    per_image = MarginLoss(reduction=None)(labels, lengths)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(per_image), [0.02, 0.17], atol=1e-6)
    assert float(MarginLoss()(labels, lengths)) == pytest.approx(0.095, abs=1e-6)
    assert float(MarginLoss()(labels.reshape(2, 1), lengths)) == pytest.approx(0.095, abs=1e-6)
    # m+ 0.5 forgives image 1's present class; lambda 1 doubles the absent terms: (0.04 + 0.16) / 2
    assert float(MarginLoss(m_plus=0.5, down_weight=1.0)(labels, lengths)) == pytest.approx(0.1, abs=1e-6)


def test_margin_loss_round_trips_through_keras_serialization() -> None:
    loss = MarginLoss(m_plus=0.8, m_minus=0.2, down_weight=0.25)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, MarginLoss)
    assert (restored.m_plus, restored.m_minus, restored.down_weight) == (0.8, 0.2, 0.25)

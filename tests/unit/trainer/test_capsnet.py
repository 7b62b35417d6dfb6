"""The zoo's capsule network and its margin loss: the layers against a NumPy transcription of the paper,
the loss on hand-computed values, and one short training through the pipeline's compile."""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import numpy.typing as npt
import pytest

from mnist_api.env import TrainerConfig
from mnist_trainer.capsules import MarginLoss, RoutingCapsules, squash
from mnist_trainer.models import build_model, loss_for
from mnist_trainer.pipeline import build_compiled_model
from tests.support.mnist_data import synthetic_mnist

Floats = npt.NDArray[np.float64]


def test_capsnet_is_the_half_width_net_without_decoder() -> None:
    model = build_model("capsnet")
    # conv 9x9x1x128 + 128, primary 9x9x128x128 + 128, routing 576 capsules x 10 x 16 x 8
    assert model.count_params() == 10_496 + 1_327_232 + 737_280 == 2_075_008
    assert tuple(model.input_shape) == (None, 28, 28)
    assert tuple(model.output_shape) == (None, 10)
    assert tuple(build_model("capsnet", 3).output_shape) == (None, 3)


def test_each_model_names_its_loss() -> None:
    margin = loss_for("capsnet")
    assert isinstance(margin, MarginLoss)
    assert (margin.m_plus, margin.m_minus, margin.down_weight) == (0.9, 0.1, 0.5)
    assert loss_for("capsnet") is not margin, "a fresh loss per compiled model"
    assert loss_for("convnet") == loss_for("mlp") == "sparse_categorical_crossentropy"
    with pytest.raises(ValueError, match="capsnet, convnet, mlp"):
        loss_for("resnet")


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


@dataclass(frozen=True)
class Trained:
    model: keras.Model
    x: npt.NDArray[np.float32]
    y: npt.NDArray[np.uint8]
    before: dict[str, float]
    after: dict[str, float]
    saved: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """One epoch of 320 synthetic images at batch 16 (20 Adam steps), compiled as the pipeline does."""
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("capsnet")
    config = TrainerConfig(
        namespace="default",
        name="capsnet",
        uid="0",
        dataset="mnist",
        data_dir=str(folder),
        output_dir=str(folder),
        model="capsnet",
        epochs=1,
        batch_size=16,
        learning_rate=0.001,
        optimizer="adam",
        validation_split=0.0,
        export_formats=["keras"],
    )
    model = build_compiled_model(config, steps_per_epoch=320 // 16)
    data = synthetic_mnist(n_train=320, n_test=0, seed=1)
    x, y = data["x_train"].astype(np.float32), data["y_train"]
    before = model.evaluate(x, y, batch_size=64, return_dict=True, verbose=0)
    model.fit(x, y, batch_size=config.batch_size, epochs=config.epochs, shuffle=True, verbose=0)
    after = model.evaluate(x, y, batch_size=64, return_dict=True, verbose=0)
    saved = folder / "model.keras"
    model.save(saved)  # after fit: the file holds Adam's moments too, as the trainer's export does
    yield Trained(model, x, y, before, after, saved)
    keras.backend.clear_session()


def test_one_short_epoch_lowers_the_margin_loss(trained: Trained) -> None:
    assert set(trained.after) == {"loss", "accuracy"}
    assert trained.after["loss"] < 0.5 * trained.before["loss"], (trained.before, trained.after)
    assert trained.after["accuracy"] > 0.5, "capsule lengths argmax to the class"
    predicted = np.argmax(trained.model.predict(trained.x, verbose=0), axis=1)
    assert np.mean(predicted == trained.y) == pytest.approx(trained.after["accuracy"], abs=1e-6)


def test_trained_capsnet_file_fits_the_seeds_30_mb(trained: Trained) -> None:
    size_mb = os.path.getsize(trained.saved) / 1e6
    assert 20 < size_mb < 30, size_mb  # ~12 bytes a parameter: the weights and Adam's two moments


def test_saved_capsnet_loads_without_custom_objects_and_predicts_the_same(trained: Trained) -> None:
    loaded: Any = keras.models.load_model(trained.saved)
    np.testing.assert_array_equal(
        loaded.predict(trained.x[:64], verbose=0), trained.model.predict(trained.x[:64], verbose=0)
    )
    assert isinstance(loaded.loss, MarginLoss)
    results = loaded.evaluate(trained.x, trained.y, batch_size=64, return_dict=True, verbose=0)
    assert results == pytest.approx(trained.after)

from itertools import pairwise
from pathlib import Path

import keras
import numpy as np
import pytest

from mnist_api.spec import LearningRateScheduleSpec
from mnist_trainer.models import LearningRate, build_model, learning_rate_over_run, make_optimizer


def test_convnet_has_the_seeds_parameter_count() -> None:
    assert build_model("convnet").count_params() == 104_202


def test_models_take_raw_28x28_images_and_output_ten_probabilities() -> None:
    for name in ("convnet", "mlp"):
        model = build_model(name)
        assert tuple(model.input_shape) == (None, 28, 28)
        assert tuple(model.output_shape) == (None, 10)
    assert build_model("mlp").count_params() == 50_890


def test_unknown_model_lists_the_zoo() -> None:
    with pytest.raises(ValueError, match="capsnet, convnet, mlp"):
        build_model("resnet")


@pytest.mark.parametrize("name", ["adam", "adamw", "rmsprop", "sgd"])
def test_every_spec_optimizer_is_built_with_its_learning_rate(name: str) -> None:
    assert float(make_optimizer(name, 0.25).learning_rate) == 0.25


def _rate_at(rate: LearningRate, step: int) -> float:
    return float(rate(step)) if callable(rate) else rate


def test_cosine_schedule_warms_up_to_the_peak_then_falls_to_zero_at_the_last_step() -> None:
    schedule = LearningRateScheduleSpec(name="cosine", warmup_epochs=0.5)
    rate = learning_rate_over_run(0.004, schedule, epochs=3, steps_per_epoch=100)
    rates = [_rate_at(rate, step) for step in range(301)]
    assert rates[0] == 0.0
    assert rates[25] == pytest.approx(0.002)  # half-way up the 50-step warm-up
    assert max(rates) == pytest.approx(0.004) and rates.index(max(rates)) == 50
    assert rates[175] == pytest.approx(0.002, rel=1e-3)  # half-way down the cosine: half the peak
    assert all(a >= b for a, b in pairwise(rates[50:]))
    assert rates[300] == pytest.approx(0.0, abs=1e-9)


def test_constant_schedule_is_the_plain_rate_and_short_runs_keep_a_step_to_decay() -> None:
    constant = LearningRateScheduleSpec(name="constant", warmup_epochs=7)
    assert learning_rate_over_run(0.01, constant, epochs=1, steps_per_epoch=10) == 0.01
    # One step in the whole run: nothing to warm up over, the peak is taken at once.
    tiny = learning_rate_over_run(0.01, LearningRateScheduleSpec(), epochs=1, steps_per_epoch=1)
    assert _rate_at(tiny, 0) == pytest.approx(0.01)


def test_a_scheduled_optimizer_saves_and_loads_with_its_schedule_and_step(tmp_path: Path) -> None:
    # A resumed or fine-tuned run reads the schedule back from the file, at the step it had reached.
    model = build_model("mlp")
    rate = learning_rate_over_run(0.003, LearningRateScheduleSpec(), epochs=2, steps_per_epoch=10)
    model.compile(optimizer=make_optimizer("adam", rate), loss="sparse_categorical_crossentropy")
    model.fit(np.zeros((24, 28, 28)), np.zeros(24, dtype=int), batch_size=8, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras").optimizer
    assert int(loaded.iterations) == 3
    # The 3 steps were the warm-up (0.3 of 10 steps): the next step starts the cosine at its peak.
    assert float(loaded.learning_rate) == pytest.approx(0.003)
    assert float(loaded.learning_rate) == pytest.approx(float(model.optimizer.learning_rate))

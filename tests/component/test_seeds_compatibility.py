"""The seeds' snippets, with only the import changed, against a real Pushgateway."""

import numpy as np
import numpy.typing as npt

from tests.support.servers import Pushgateway


def test_the_seeds_train_and_test_snippets_work_with_our_exporter(
    pushgateway: Pushgateway, synthetic_arrays: dict[str, npt.NDArray[np.uint8]]
) -> None:

    from mnist_trainer import HISTOGRAM_WEIGHT_BUCKETS_0_3, TrainTestExporter
    from mnist_trainer.models import convnet

    address = pushgateway.url.removeprefix("http://")  # the seeds pass "127.0.0.1:9091"
    model = convnet()
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = (
        synthetic_arrays["x_train"][:512].astype("float32"),
        synthetic_arrays["y_train"][:512].astype("int32"),
    )
    model.fit(
        x,
        y,
        epochs=2,
        batch_size=64,
        validation_split=0.2,
        verbose=0,
        callbacks=[TrainTestExporter(address, "mnist")],
    )
    callback = TrainTestExporter(
        "http://" + address, "mnist", histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_0_3, ignore_exceptions=False
    )
    model.evaluate(x[:128], y[:128], callbacks=[callback], verbose=0)

    lines = [line for line in pushgateway.exposition().splitlines() if not line.startswith("#")]
    train = sorted(line.split("{")[0] for line in lines if line.startswith("gangplank_train"))
    assert train == [
        "gangplank_train_accuracy",
        "gangplank_train_elapsed_time_seconds",
        "gangplank_train_epochs_count",
        "gangplank_train_loss",
        "gangplank_train_model_parameters_count",
        "gangplank_train_val_accuracy",
        "gangplank_train_val_loss",
    ]
    assert 'gangplank_train_epochs_count{instance="",job="mnist"} 2' in lines
    assert 'gangplank_test_model_parameters_count{instance="",job="mnist"} 104202' in lines
    assert 'gangplank_test_model_weights_count{instance="",job="mnist"} 104202' in lines
    assert 'gangplank_test_model_weights_sum{instance="",job="mnist"} 0' in lines
    assert any(
        line.startswith('gangplank_test_model_weights_bucket{instance="",job="mnist",le="-0.3"}')
        for line in lines
    )


def test_the_metrics_filter_limits_what_is_pushed(
    pushgateway: Pushgateway, synthetic_arrays: dict[str, npt.NDArray[np.uint8]]
) -> None:
    from mnist_trainer import TrainTestExporter
    from mnist_trainer.models import mlp

    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = (
        synthetic_arrays["x_train"][:256].astype("float32"),
        synthetic_arrays["y_train"][:256].astype("int32"),
    )
    model.fit(
        x,
        y,
        epochs=1,
        verbose=0,
        callbacks=[TrainTestExporter(pushgateway.url, "filtered", metrics=["loss"])],
    )
    names = {
        line.split("{")[0]
        for line in pushgateway.exposition().splitlines()
        if line.startswith("gangplank_train")
    }
    assert "gangplank_train_loss" in names and "gangplank_train_accuracy" not in names

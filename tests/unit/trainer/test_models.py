import pytest

from mnist_trainer.models import build_model, make_optimizer


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

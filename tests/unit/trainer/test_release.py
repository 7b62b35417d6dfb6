from mnist_api.spec import ReleaseCriteriaSpec
from mnist_trainer.release import ModelFigures, release_failures

FIGURES = ModelFigures(0.95, {0: 0.99, 1: 0.88, 2: 0.97}, 1.2, 3.0)


def test_no_criteria_no_failures() -> None:
    assert release_failures(ReleaseCriteriaSpec(), FIGURES) == []


def test_each_unmet_criterion_is_one_sentence() -> None:
    criteria = ReleaseCriteriaSpec(
        min_test_accuracy=0.97, min_per_class_accuracy=0.9, max_model_size_mb=1.0, max_inference_time_ms=2.0
    )
    failures = release_failures(criteria, FIGURES)
    assert failures == [
        "test accuracy 0.9500 < minTestAccuracy 0.97",
        "class 1 accuracy 0.8800 < minPerClassAccuracy 0.9",
        "model size 1.20 MB > maxModelSizeMb 1.0",
        "inference time 3.00 ms > maxInferenceTimeMs 2.0",
    ]


def test_met_criteria_pass() -> None:
    criteria = ReleaseCriteriaSpec(min_test_accuracy=0.95, min_per_class_accuracy=0.88, max_model_size_mb=1.2)
    assert release_failures(criteria, FIGURES) == []


def test_model_size_gate_is_never_skipped_when_size_is_unknown() -> None:
    # Issue 12 item 7: with model.keras not exported the size used to be None and the gate passed silently.
    unknown_size = ModelFigures(0.95, {0: 0.99}, None, 3.0)
    failures = release_failures(ReleaseCriteriaSpec(max_model_size_mb=5.0), unknown_size)
    assert failures == [
        "maxModelSizeMb 5.0 cannot be checked: the model size is unknown (add keras to spec.output.formats)"
    ]
    assert release_failures(ReleaseCriteriaSpec(), unknown_size) == []

"""Release criteria: checks a trained model must pass before the run counts as a success."""

from dataclasses import dataclass

from mnist_api.spec import ReleaseCriteriaSpec


@dataclass(frozen=True)
class ModelFigures:
    test_accuracy: float
    per_class_accuracy: dict[int, float]
    model_size_mb: float | None
    inference_time_ms: float


def release_failures(criteria: ReleaseCriteriaSpec, figures: ModelFigures) -> list[str]:
    """Each unmet criterion as a sentence; empty when the model may be released."""
    failures = []
    if criteria.min_test_accuracy is not None and figures.test_accuracy < criteria.min_test_accuracy:
        failures.append(
            f"test accuracy {figures.test_accuracy:.4f} < minTestAccuracy {criteria.min_test_accuracy}"
        )
    if criteria.min_per_class_accuracy is not None:
        worst_class, worst = min(figures.per_class_accuracy.items(), key=lambda item: item[1])
        if worst < criteria.min_per_class_accuracy:
            limit = criteria.min_per_class_accuracy
            failures.append(f"class {worst_class} accuracy {worst:.4f} < minPerClassAccuracy {limit}")
    if criteria.max_model_size_mb is not None:
        # A gate the spec names is never skipped: an unknown size (model.keras not exported) fails it
        # with the reason, rather than letting the run pass unchecked.
        if figures.model_size_mb is None:
            failures.append(
                f"maxModelSizeMb {criteria.max_model_size_mb} cannot be checked: the model size is "
                "unknown (add keras to spec.output.formats)"
            )
        elif figures.model_size_mb > criteria.max_model_size_mb:
            failures.append(
                f"model size {figures.model_size_mb:.2f} MB > maxModelSizeMb {criteria.max_model_size_mb}"
            )
    if (
        criteria.max_inference_time_ms is not None
        and figures.inference_time_ms > criteria.max_inference_time_ms
    ):
        limit = criteria.max_inference_time_ms
        failures.append(f"inference time {figures.inference_time_ms:.2f} ms > maxInferenceTimeMs {limit}")
    return failures

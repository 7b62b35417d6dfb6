"""The trainer's exit codes: what each means and whether a retry can help.

The operator turns these into the Job's ``podFailurePolicy`` (codes that a retry cannot fix fail the Job at
once) and into the reason of the resource's ``Failed`` condition. Codes follow the spirit of BSD
``sysexits.h`` so they stay clear of Python's own 1 (uncaught exception) and 2 (usage), and of 128+N
(killed by signal N).
"""

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Every way the trainer process can end."""

    SUCCESS = 0
    UNEXPECTED = 1
    """An uncaught exception: a bug or an environment problem; retried."""
    DATA_INVALID = 65
    """The dataset was downloaded but is wrong: checksum mismatch, truncated or malformed file."""
    DATA_UNAVAILABLE = 66
    """The dataset could not be downloaded after every retry."""
    METRICS_UNAVAILABLE = 69
    """A metrics push failed while ``ignoreExceptions`` is false; retried, the Pushgateway may come back."""
    TRAINING_FAILED = 70
    """Training diverged (a non-finite loss); retrying the same run would diverge again."""
    EXPORT_FAILED = 73
    """The model or metrics.json could not be written to the output volume; retried."""
    WORKER_LOST = 75
    """A multi-worker training lost one of its workers mid-step; the whole set restarts and resumes."""
    CONFIG_INVALID = 78
    """The trainer's environment is missing or malformed; a retry cannot fix it."""
    RELEASE_CRITERIA_NOT_MET = 79
    """Training finished but the model failed ``spec.releaseCriteria``; the model is kept for inspection."""
    INTERRUPTED = 143
    """Stopped by SIGTERM or SIGINT (pod deletion, preemption, Ctrl-C); resumes from the last epoch."""


@dataclass(frozen=True)
class ExitCodeInfo:
    reason: str
    """CamelCase reason used in the resource's conditions and Events."""
    retryable: bool
    """False means the Job fails at once: retrying the same pod cannot succeed."""
    description: str


EXIT_CODES: dict[ExitCode, ExitCodeInfo] = {
    ExitCode.SUCCESS: ExitCodeInfo("Completed", True, "the run succeeded"),
    ExitCode.UNEXPECTED: ExitCodeInfo("TrainerError", True, "the trainer crashed; see its log"),
    ExitCode.DATA_INVALID: ExitCodeInfo(
        "DataInvalid",
        False,
        "the dataset failed its sha256 check or is not valid MNIST data, or the base model is not a Keras model",
    ),
    ExitCode.DATA_UNAVAILABLE: ExitCodeInfo(
        "DataUnavailable",
        False,
        "the dataset, the base model or the images to predict could not be read; check spec.dataset, "
        "spec.baseModel and spec.predict",
    ),
    ExitCode.METRICS_UNAVAILABLE: ExitCodeInfo(
        "MetricsPushFailed", True, "the Pushgateway refused a push and spec.metrics.ignoreExceptions is false"
    ),
    ExitCode.TRAINING_FAILED: ExitCodeInfo(
        "TrainingDiverged", False, "the loss became NaN or infinite; lower spec.learningRate"
    ),
    ExitCode.EXPORT_FAILED: ExitCodeInfo(
        "ExportFailed", True, "the model could not be written to its volume"
    ),
    ExitCode.WORKER_LOST: ExitCodeInfo(
        "WorkerLost",
        True,
        "another worker of the training stopped answering (killed, evicted or its node lost); the workers "
        "restart together and resume from the last finished epoch",
    ),
    ExitCode.CONFIG_INVALID: ExitCodeInfo(
        "ConfigInvalid", False, "the trainer's environment is invalid (operator/trainer version skew?)"
    ),
    ExitCode.RELEASE_CRITERIA_NOT_MET: ExitCodeInfo(
        "ReleaseCriteriaNotMet", False, "the trained model did not meet spec.releaseCriteria"
    ),
    ExitCode.INTERRUPTED: ExitCodeInfo(
        "Interrupted", True, "the trainer was stopped by a signal; it resumes from its last finished epoch"
    ),
}


def describe_exit_code(code: int) -> ExitCodeInfo:
    """What an exit code means; unknown codes (e.g. 137 after SIGKILL) get a generic, honest answer."""
    try:
        return EXIT_CODES[ExitCode(code)]
    except ValueError:
        if code > 128:
            return ExitCodeInfo("Killed", True, f"the trainer was killed by signal {code - 128}")
        return ExitCodeInfo("TrainerError", True, f"the trainer exited with unknown code {code}")


def codes_that_fail_at_once() -> list[int]:
    """Exit codes for the podFailurePolicy ``FailJob`` rule, sorted as the API server wants them."""
    return sorted(int(code) for code, info in EXIT_CODES.items() if code and not info.retryable)

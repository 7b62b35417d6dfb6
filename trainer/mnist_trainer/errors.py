"""Failures the trainer knows how to explain, each tied to its documented exit code."""

from mnist_api.exit_codes import ExitCode


class TrainerError(Exception):
    """A failure with a user-facing message and the exit code that reports it."""

    exit_code: ExitCode = ExitCode.UNEXPECTED


class DataUnavailableError(TrainerError):
    exit_code = ExitCode.DATA_UNAVAILABLE


class DataInvalidError(TrainerError):
    exit_code = ExitCode.DATA_INVALID


class MetricsPushError(TrainerError):
    exit_code = ExitCode.METRICS_UNAVAILABLE


class TrainingDivergedError(TrainerError):
    exit_code = ExitCode.TRAINING_FAILED


class ExportError(TrainerError):
    exit_code = ExitCode.EXPORT_FAILED


class ConfigInvalidError(TrainerError):
    exit_code = ExitCode.CONFIG_INVALID


class WorkerLostError(TrainerError):
    exit_code = ExitCode.WORKER_LOST


class ReleaseCriteriaError(TrainerError):
    exit_code = ExitCode.RELEASE_CRITERIA_NOT_MET


class Interrupted(BaseException):
    """SIGTERM or SIGINT came in: raised where unwinding is safe (``stop_requests``)."""

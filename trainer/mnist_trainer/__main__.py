"""``python -m mnist_trainer``: one training run, configured only through ``MNIST_*`` variables.

The exit code says what happened (``mnist_api.exit_codes``); a one-line reason also goes to
``/dev/termination-log`` when the kubelet provides it, so the operator can show it in the status.
"""

import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from mnist_api.env import EnvContractError, TrainerConfig
from mnist_api.exit_codes import ExitCode

from .errors import Interrupted, TrainerError
from .startup_log import tensorflow_startup_filtered
from .stop_requests import StopRequests

TERMINATION_LOG = Path("/dev/termination-log")
log = logging.getLogger("mnist_trainer")


def configure_logging() -> None:
    # TensorFlow's C++ INFO and WARNING records are noise in `kubectl logs`; errors still come through.
    # Set before TensorFlow loads, which is when it reads the level; a value the user set wins. The records its
    # libraries log while loading ignore the level: startup_log.py holds them to it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    logging.getLogger("absl").setLevel(logging.WARNING)
    # tf2onnx (the ONNX export) narrates each conversion at INFO; what it cannot convert comes at ERROR.
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    # matplotlib (the model card) says "generated new fontManager" on the first import in a fresh pod.
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


def write_termination_message(message: str) -> None:
    """Only where the kubelet created the file: never create files under /dev ourselves."""
    if TERMINATION_LOG.exists():
        with contextlib.suppress(OSError):
            TERMINATION_LOG.write_text(message[:4000], encoding="utf-8")


def main() -> int:
    configure_logging()
    try:
        config = TrainerConfig.from_env(os.environ)
    except EnvContractError as error:
        log.error("%s", error)
        write_termination_message(str(error))
        return ExitCode.CONFIG_INVALID
    stops = StopRequests()
    stops.install()
    try:
        # Imported after the signal handler is in place: importing TensorFlow takes seconds. Its libraries
        # log start-up lines that ignore TF_CPP_MIN_LOG_LEVEL while they load (startup_log.py).
        with tensorflow_startup_filtered():
            from .pipeline import run_training

        with stops.deferred():
            report = run_training(config, os.environ, stops)
    except TrainerError as error:
        log.error("%s", error)
        write_termination_message(str(error))
        return error.exit_code
    except Interrupted as stop:
        log.warning("stopped by %s; the next attempt resumes from the last finished epoch", stop)
        return ExitCode.INTERRUPTED
    log.info("done: %s", summary(report))
    return ExitCode.SUCCESS


def summary(report: dict[str, Any]) -> str:
    """The last line of a successful run's log, by task."""
    seconds = report["timings"]["total_seconds"]
    if "worker" in report:
        return f"worker {report['worker']} trained in {seconds:.1f}s; worker 0 reports the test accuracy"
    if report.get("task") == "predict":
        return f"predicted {report['predictions']['images']} images in {seconds:.1f}s"
    accuracy = report["test"]["accuracy"]
    if report.get("task") == "evaluate":
        return f"test accuracy {accuracy:.4f} of {report['baseModel']} in {seconds:.1f}s"
    return f"test accuracy {accuracy:.4f} after {report['epochs']} epochs in {seconds:.1f}s"


if __name__ == "__main__":
    sys.exit(main())

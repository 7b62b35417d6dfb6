"""Write the trained model to the run's directory, once per export format, atomically (temp, then rename)."""

import contextlib
import io
import logging
import os
import shutil
from pathlib import Path

import keras

from .errors import ExportError

log = logging.getLogger(__name__)


def export_keras(model: keras.Model, destination: Path) -> Path:
    temporary = destination.with_name(f".partial-{os.getpid()}.keras")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        model.save(temporary)
        os.replace(temporary, destination)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise ExportError(f"cannot write {destination}: {error.strerror or error}") from None
    return destination


def export_saved_model(model: keras.Model, destination: Path) -> Path:
    temporary = destination.with_name(f".partial-{os.getpid()}-{destination.name}")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(temporary, ignore_errors=True)
        # model.export prints a signature summary to stdout; keep it out of the progress log.
        with contextlib.redirect_stdout(io.StringIO()) as summary:
            model.export(str(temporary), format="tf_saved_model", verbose=False)
        log.debug("SavedModel summary:\n%s", summary.getvalue())
        shutil.rmtree(destination, ignore_errors=True)
        os.replace(temporary, destination)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise ExportError(f"cannot write {destination}: {error.strerror or error}") from None
    return destination

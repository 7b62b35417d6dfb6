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


def export_saved_model(model: keras.Model, version_dir: Path) -> Path:
    """The SavedModel in ``version_dir`` (``<base>/1``), its base folder replaced as a whole: TF Serving and
    KServe poll the base folder for numbered versions, so they never see a half-written or half-deleted one."""
    base = version_dir.parent
    temporary = base.with_name(f".partial-{os.getpid()}-{base.name}")
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(temporary, ignore_errors=True)
        _write_saved_model(model, temporary / version_dir.name)
        _replace_dir(temporary, base)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise ExportError(f"cannot write {version_dir}: {error.strerror or error}") from None
    return version_dir


def _write_saved_model(model: keras.Model, folder: Path) -> None:
    # model.export prints a signature summary to stdout; keep it out of the progress log.
    with contextlib.redirect_stdout(io.StringIO()) as summary:
        model.export(str(folder), format="tf_saved_model", verbose=False)
    log.debug("SavedModel summary:\n%s", summary.getvalue())


def _replace_dir(new: Path, destination: Path) -> None:
    """Rename ``new`` to ``destination``. A rename cannot replace a folder that holds files, so an old
    ``destination`` is renamed aside first and deleted after: it is never seen half deleted."""
    if not destination.exists():
        os.replace(new, destination)
        return
    stale = destination.with_name(f".stale-{os.getpid()}-{destination.name}")
    shutil.rmtree(stale, ignore_errors=True)
    os.replace(destination, stale)
    os.replace(new, destination)
    shutil.rmtree(stale, ignore_errors=True)

"""The run's epoch backup and its best-model checkpoint, for the price of one serialisation per epoch.

Keras' ``BackupAndRestore`` writes the variables after every epoch; its ``ModelCheckpoint`` then
serialises them all again, in a ``.keras`` archive, after every epoch that improves the monitored value.
The two files hold the same bytes: a ``.keras`` archive is a zip of ``config.json``, ``metadata.json``
and ``model.weights.h5``, and that last member is what ``model.save_weights`` writes, which is what the
backup is (the optimizer's state included). ``BackupAndBestModel`` therefore builds the best checkpoint
from the model's config and a copy of the backup file the same epoch has just written.
"""

import datetime
import json
import logging
import math
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
from keras.src.backend.common import global_state

from .run_state import ResilientBackupAndRestore

__all__ = ["BackupAndBestModel", "keep_keras_saving_skipsets", "write_keras_archive"]

log = logging.getLogger(__name__)

# The members of a .keras archive, as keras.saving writes and reads them.
CONFIG_MEMBER = "config.json"
METADATA_MEMBER = "metadata.json"
WEIGHTS_MEMBER = "model.weights.h5"


class BackupAndBestModel(ResilientBackupAndRestore):
    """The run's backup (``ResilientBackupAndRestore``, double checkpoint, kept after training), and the
    best epoch's model as a ``.keras`` file, as ``ModelCheckpoint(best_checkpoint, monitor=monitor,
    save_best_only=True, initial_value_threshold=...)`` keeps it: an epoch is saved when its ``monitor``
    beats every earlier one and ``initial_value_threshold`` (the earlier attempts' best: a retried
    attempt's first epoch must beat it, not overwrite it). Lower is better, unless ``monitor`` is an
    accuracy. The file is replaced atomically, so a reader never sees half of it.

    It backs up after every epoch, never within one, so it needs no batch-end hook (Keras' own callback
    has one, to count batches for ``save_freq``): Keras would call it at every step.
    """

    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end

    def __init__(
        self,
        backup_dir: Path,
        best_checkpoint: Path,
        *,
        monitor: str,
        initial_value_threshold: float | None = None,
    ) -> None:
        super().__init__(str(backup_dir), double_checkpoint=True, delete_checkpoint=False)
        self.best_checkpoint = best_checkpoint
        self.monitor = monitor
        self.best = initial_value_threshold
        self._missing_monitor_logged = False

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        super().on_epoch_end(epoch, logs)  # the backup: the variables, then the epoch's number
        keep_keras_saving_skipsets()
        current = (logs or {}).get(self.monitor)
        if current is None:
            if not self._missing_monitor_logged:
                self._missing_monitor_logged = True
                log.warning("no %s in the epoch's figures: no best-model checkpoint is kept", self.monitor)
            return
        if self._improves(float(current)):
            self.best = float(current)
            write_keras_archive(self.model, Path(self._weights_path), self.best_checkpoint)

    def _improves(self, current: float) -> bool:
        if math.isnan(current):
            return False
        if self.best is None:
            return True
        return current > self.best if "accuracy" in self.monitor else current < self.best


def keep_keras_saving_skipsets() -> None:
    """Make Keras' saving reuse what it already worked out, as it means to.

    For each kind of object it saves (layer, optimizer, metric, ...), Keras works out the attributes to
    skip by building a reference object of that kind, and caches the set, but files it under
    ``saving_attr_skipset_<kind>`` and looks under ``saving_attr_skiplist_<kind>`` (Keras 3.15), so every
    save builds those reference objects again: most of what saving a small model's weights costs. This
    files each set under the name Keras looks for too; once Keras uses one name, it changes nothing.
    """
    tracker = global_state.GLOBAL_STATE_TRACKER  # per thread, like every save's own lookups
    for name, skipset in list(vars(tracker).items()):
        if name.startswith("saving_attr_skipset_"):
            setattr(tracker, name.replace("saving_attr_skipset_", "saving_attr_skiplist_", 1), skipset)


def write_keras_archive(model: keras.Model, weights_file: Path, destination: Path) -> Path:
    """``model.save(destination)``, with ``weights_file`` (what ``model.save_weights`` wrote for the
    model's current state) as its variables instead of serialising them again.

    The zoo's models keep nothing but variables (no vocabularies or other assets), so the archive needs
    no assets folder. The config is ``model.to_json()``, Keras' public serialisation of it; ``model.save``
    also marks the layers' shared dtype policy as one object, which loading does not need. Written to a
    temporary file, then renamed over ``destination``.
    """
    metadata = {
        "keras_version": keras.version(),
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
    }
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".partial-{os.getpid()}-{destination.name}")
    try:
        with zipfile.ZipFile(temporary, "w") as archive:  # stored, not compressed, as Keras writes it
            archive.writestr(METADATA_MEMBER, json.dumps(metadata))
            archive.writestr(CONFIG_MEMBER, model.to_json())
            archive.write(weights_file, WEIGHTS_MEMBER)
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)
    return destination

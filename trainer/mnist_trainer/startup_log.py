"""TensorFlow's start-up lines, held to the log level TensorFlow itself is given.

``configure_logging`` sets ``TF_CPP_MIN_LOG_LEVEL=2`` before TensorFlow is imported, and TensorFlow honours
it from then on. Not while its shared libraries load, though: their static initialisers log through absl
before TensorFlow has applied the level, and absl writes every record to stderr until it is initialised
(prefaced by its own "WARNING: All log messages before absl::InitializeLog() is called are written to
STDERR"). That is how "oneDNN custom operations are on. You may see slightly different numerical
results..." reached `kubectl logs` and local mode's log, twice per run (once per library), on every CPU
where oneDNN is on by default, and how the cpu_feature_guard line ("This TensorFlow binary is optimized to
use available CPU instructions...") could.

So while TensorFlow loads, the trainer's stderr goes through a filter that applies the level to those
records as TensorFlow would have: with the default of 2, INFO and WARNING records go, ERROR and FATAL ones
and everything that is not an absl record (Python warnings, tracebacks) pass through unchanged. oneDNN
itself stays on (``TF_ENABLE_ONEDNN_OPTS=0`` would cost speed); only the message goes. Imports nothing
heavy: it runs before TensorFlow loads.
"""

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping

# An absl record's first line: severity letter, date, time, thread id, source file and line, then "] ".
# Before absl is initialised the date and time read "0000 00:00:<epoch seconds>".
ABSL_RECORD = re.compile(r"^(?P<severity>[IWEF])\d{4} [\d:.]+ +\d+ [^\s\]]+:\d+\] ")
ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
SEVERITY_LEVELS = {"I": 0, "W": 1, "E": 2, "F": 3}  # TF_CPP_MIN_LOG_LEVEL's scale
# Lines that start something else than the continuation of the record above them: a Python warning
# ("path.py:12: UserWarning: ...") or a traceback.
OTHER_START = re.compile(r"^(\S.*:\d+: \w*Warning: |Traceback \(most recent call last\):)")


def min_log_level(environ: Mapping[str, str]) -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as TensorFlow reads it: unset or not a number is 0, everything shown."""
    try:
        return max(0, int(environ.get("TF_CPP_MIN_LOG_LEVEL", "0")))
    except ValueError:
        return 0


def filter_startup_lines(lines: Iterable[str], min_level: int) -> Iterator[str]:
    """The lines with absl records below ``min_level`` left out, continuation lines included (the
    cpu_feature_guard record has a second line, "To enable the following instructions: ...")."""
    dropping = False
    for line in lines:
        text = line.rstrip("\r\n")
        record = ABSL_RECORD.match(text)
        if record:
            dropping = SEVERITY_LEVELS[record["severity"]] < min_level
        elif text == ABSL_PREAMBLE:
            dropping = min_level > 0  # it only introduces the records, which say what they are themselves
        elif OTHER_START.match(text):
            dropping = False
        if not dropping:
            yield line


@contextlib.contextmanager
def tensorflow_startup_filtered(environ: Mapping[str, str] = os.environ) -> Iterator[None]:
    """Filter what reaches stderr (file descriptor 2, where absl writes) while the block runs.

    The block is the import of TensorFlow: only then do the unruly records come. Everything that passes
    is written on as soon as its line is complete, so it stays close to the stdout lines around it.
    """
    min_level = min_log_level(environ)
    if min_level == 0:
        yield  # TF_CPP_MIN_LOG_LEVEL=0 asks for every record: nothing to filter
        return
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    forwarder = threading.Thread(
        target=_forward, args=(read_end, original, min_level), name="tensorflow-startup-filter", daemon=True
    )
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        # Closes the pipe's last write end: the forwarder writes what is left and stops.
        os.dup2(original, 2)
        # A process started inside the block would hold a write end open: never wait on it forever.
        forwarder.join(timeout=10)
        if not forwarder.is_alive():
            os.close(original)


def _forward(read_end: int, target: int, min_level: int) -> None:
    with open(read_end, "rb") as pipe:
        # surrogateescape: bytes that are not UTF-8 come out exactly as they went in.
        lines = (raw.decode("utf-8", "surrogateescape") for raw in pipe)
        for line in filter_startup_lines(lines, min_level):
            data = memoryview(line.encode("utf-8", "surrogateescape"))
            while data:
                data = data[os.write(target, data) :]

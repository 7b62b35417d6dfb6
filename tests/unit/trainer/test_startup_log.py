"""TensorFlow's start-up records, held to TF_CPP_MIN_LOG_LEVEL as TensorFlow would hold them."""

import subprocess
import sys
import textwrap

import pytest

from mnist_trainer.startup_log import filter_startup_lines, min_log_level

PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
ONEDNN = (
    "I0000 00:00:1796372749.280846   17672 port.cc:153] oneDNN custom operations are on. You may see slightly"
    " different numerical results due to floating-point round-off errors from different computation orders."
    " To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n"
)
CPU_GUARD = (
    "I0000 00:00:1796372524.800624   14003 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use"
    " available CPU instructions in performance-critical operations.\n"
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the"
    " appropriate compiler flags.\n"
)
WARNING = (
    "W0000 00:00:1796373113.900454   23555 port.cc:148] TF_ENABLE_ONEDNN_OPTS is not set to either '0'\n"
)
ERROR = "E0000 00:00:1796373113.900454   23555 cuda_dnn.cc:8310] Unable to register cuDNN factory\n"
PY_WARNING = "/venv/lib/python3.11/site-packages/keras/src/x.py:12: UserWarning: something real\n"
TRACEBACK = 'Traceback (most recent call last):\n  File "<string>", line 1, in <module>\nImportError: boom\n'


def kept(text: str, level: int) -> str:
    return "".join(filter_startup_lines(text.splitlines(keepends=True), level))


def test_the_default_level_drops_info_and_warning_records_and_keeps_errors() -> None:
    transcript = PREAMBLE + ONEDNN + PREAMBLE + ONEDNN + CPU_GUARD + WARNING + ERROR
    assert kept(transcript, 2) == ERROR


def test_what_is_not_an_absl_record_passes_even_right_after_a_dropped_one() -> None:
    # The cpu_feature_guard record's second line goes with it; a Python warning or a traceback that
    # happens to follow is not part of it.
    assert kept(CPU_GUARD + PY_WARNING + ONEDNN + TRACEBACK, 2) == PY_WARNING + TRACEBACK
    assert (
        kept("plain line\n" + ONEDNN + ERROR + "its second line\n", 2)
        == "plain line\n" + ERROR + "its second line\n"
    )


def test_the_level_means_what_it_means_to_tensorflow() -> None:
    transcript = PREAMBLE + ONEDNN + WARNING + ERROR
    assert kept(transcript, 0) == transcript
    assert kept(transcript, 1) == WARNING + ERROR
    assert kept(transcript, 3) == ""


@pytest.mark.parametrize(("value", "level"), [(None, 0), ("2", 2), ("0", 0), ("3", 3), ("x", 0), ("-1", 0)])
def test_min_log_level_reads_the_variable_as_tensorflow_does(value: str | None, level: int) -> None:
    assert min_log_level({} if value is None else {"TF_CPP_MIN_LOG_LEVEL": value}) == level


def test_the_filter_sits_on_file_descriptor_2_where_absl_writes() -> None:
    # absl writes to the descriptor, not to sys.stderr: the filter must see writes that bypass Python.
    code = textwrap.dedent(f"""
        import os, sys
        from mnist_trainer.startup_log import tensorflow_startup_filtered
        print("before", file=sys.stderr, flush=True)
        with tensorflow_startup_filtered({{"TF_CPP_MIN_LOG_LEVEL": "2"}}):
            os.write(2, {(PREAMBLE + ONEDNN + CPU_GUARD + ERROR).encode()!r})
            print("python inside", file=sys.stderr)
            os.write(2, b"no newline at the end")
        print(" | after", file=sys.stderr)
        os.write(2, {ONEDNN.encode()!r})  # after the block: not filtered (TensorFlow applies its level)
    """)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stderr == "before\n" + ERROR + "python inside\nno newline at the end | after\n" + ONEDNN


def test_level_0_leaves_stderr_alone() -> None:
    code = textwrap.dedent(f"""
        import os
        from mnist_trainer.startup_log import tensorflow_startup_filtered
        with tensorflow_startup_filtered({{"TF_CPP_MIN_LOG_LEVEL": "0"}}):
            os.write(2, {ONEDNN.encode()!r})
    """)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stderr == ONEDNN

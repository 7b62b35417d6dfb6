"""The command line: ``--set PATH=VALUE`` values read as kubectl reads a manifest, and refused as the API
server would refuse them; help texts in plain text."""

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnist_api import ManifestError, MnistTraining, load_manifest_file
from mnist_operator.cli import apply_overrides, build_parser

SAMPLE = Path(__file__).resolve().parents[3] / "manifests" / "samples" / "mnist-training.yaml"


def sample(*assignments: str) -> MnistTraining:
    """The sample manifest with ``--set`` assignments applied."""
    (training,) = load_manifest_file(str(SAMPLE))
    return apply_overrides(training, list(assignments))


def test_set_reads_values_as_a_manifest_would() -> None:
    # Issue 12 item 1: `--set spec.learningRate=1e-3` was a string for PyYAML, so it was refused.
    training = sample("spec.learningRate=1e-3", "spec.batchSize=32.0", "spec.model=null")
    assert training.spec.learning_rate == 0.001 and training.spec.batch_size == 32
    assert training.spec.model == "convnet"  # null is pruned, then defaulted


def test_set_refuses_what_kubectl_cannot_send() -> None:
    with pytest.raises(ManifestError, match=r"unsupported value: \+Inf"):
        sample("spec.releaseCriteria.maxModelSizeMb=.inf")
    with pytest.raises(ManifestError, match="must be of type integer"):
        sample('spec.epochs="5"')


# Markup --help would print literally: RST (``literal``, :class:`x`, `link`_, .. directive::) or Markdown
# (`code`, **bold**, [text](url)). The top-level help once read "The ``mnist-operator`` command line."
MARKUP = re.compile(r"`|\*\*|:[a-z]+:`|^\s*\.\. \w+::|\]\(", re.MULTILINE)


def every_parser(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                yield from every_parser(subparser)


def help_texts(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str]]:
    """(where, text) for every text --help shows: descriptions, epilogs, each option's and command's help,
    and the formatted help itself (usage lines and defaults included)."""
    for each in every_parser(parser):
        yield f"{each.prog} description", each.description or ""
        yield f"{each.prog} epilog", each.epilog or ""
        for action in each._actions:
            yield f"{each.prog} {'/'.join(action.option_strings) or action.dest}", action.help or ""
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    yield f"{each.prog} {choice.dest}", choice.help or ""
        yield f"{each.prog} --help", each.format_help()


def test_every_help_text_is_plain_text() -> None:
    texts = list(help_texts(build_parser()))
    assert {"mnist-operator --help", "mnist-operator local --help", "mnist-operator run --help"} <= {
        where for where, _ in texts
    }
    marked = {where: text for where, text in texts if MARKUP.search(text)}
    assert not marked, f"markup in help text: {marked}"


def test_the_markup_check_finds_what_it_looks_for() -> None:
    # Guards the test above against a pattern that matches nothing.
    for text in (
        "The ``mnist-operator`` command line.",
        "see :class:`Config`",
        "**bold**",
        "`code`",
        "[a](b)",
    ):
        assert MARKUP.search(text), text
    assert not MARKUP.search("override a field, e.g. spec.epochs=1 (default: runs); MNIST_OPERATOR_* it's")


def test_quiet_and_logs_exclude_each_other() -> None:
    parser = build_parser()
    assert parser.parse_args(["local", "-f", "x.yaml", "-q"]).quiet
    with pytest.raises(SystemExit):
        parser.parse_args(["local", "-f", "x.yaml", "--quiet", "--logs"])

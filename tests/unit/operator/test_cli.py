"""The command line's ``--set PATH=VALUE``: values read as kubectl reads a manifest, and refused as the API
server would refuse them."""

from pathlib import Path

import pytest

from mnist_api import ManifestError, MnistTraining, load_manifest_file
from mnist_operator.cli import apply_overrides

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

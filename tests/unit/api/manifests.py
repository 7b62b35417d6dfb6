"""Manifests for the api tests: a training's header with the spec given as YAML, and the loader's
problems with it."""

import pytest

from mnist_api import ManifestError, MnistTraining, load_manifests

HEADER = "apiVersion: training.mnist-operator.io/v1alpha1\nkind: MnistTraining\nmetadata: {name: t}\n"


def load_spec(spec_yaml: str) -> MnistTraining:
    return load_manifests(HEADER + "spec:\n" + spec_yaml)[0]


def problems(spec_yaml: str) -> list[str]:
    """The problems the loader reports with ``spec_yaml`` (it must refuse it)."""
    with pytest.raises(ManifestError) as caught:
        load_spec(spec_yaml)
    return caught.value.problems

"""Session fixtures of the pinned Kubernetes binaries, shared by tests/k8s (the real cluster) and
tests/chart (``helm lint`` and ``helm template``): a pytest plugin, registered in tests/conftest.py.

- ``k8s_binaries`` (session): the binaries ``hack/k8s-binaries.sh`` built (:mod:`.binaries`).
- ``helm`` (session): the pinned helm with throw-away homes (:mod:`.helm`).

Without the binaries every test that asks for them is skipped with the command to build them -- except
under CI (env ``CI`` set), where a skip would hide a broken tier, so the tests fail instead.
"""

from __future__ import annotations

import os

import pytest

from .binaries import Binaries, BinariesMissingError, locate, pinned_versions
from .helm import Helm


def in_ci() -> bool:
    """Whether env ``CI`` is set to anything but ``0``, ``false`` or ``no``."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def k8s_binaries() -> Binaries:
    try:
        return locate()
    except BinariesMissingError as exc:
        if in_ci():
            pytest.fail(f"CI is set, so the control-plane tier must not skip: {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def helm(k8s_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    if k8s_binaries.helm is None:
        pytest.fail(f"helm missing from {k8s_binaries.dir}; re-run hack/k8s-binaries.sh")
    return Helm(k8s_binaries.helm, tmp_path_factory.mktemp("helm"), pinned_versions()["KUBERNETES_VERSION"])

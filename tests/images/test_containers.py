"""The operator and Pushgateway images start under runc as their pods run them (read-only root, their own
uid, no network): the operator's venv and console script work as uid 1000, and the Pushgateway's
scratch image holds everything its binary loads."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from . import runc
from .conftest import BuiltImage

pytestmark = pytest.mark.images


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        pytest.skip("runc needs root here")


def test_the_operator_image_starts_its_cli_as_uid_1000(
    built_images: dict[str, BuiltImage], rootfs: Callable[[str], Path], tmp_path: Path
) -> None:
    result = runc.run(
        built_images["operator"].archive, rootfs("operator"), tmp_path, user=(1000, 1000), args=["--help"]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "run" in result.stdout, result.stdout


def test_the_pushgateway_image_runs_as_nobody(
    built_images: dict[str, BuiltImage], rootfs: Callable[[str], Path], tmp_path: Path
) -> None:
    image = built_images["pushgateway"]
    result = runc.run(image.archive, rootfs("pushgateway"), tmp_path, user=(65534, 65534), args=["--version"])
    assert result.returncode == 0, result.stdout + result.stderr
    version = image.archive.labels["org.opencontainers.image.version"]
    upstream = version.split("-")[0]  # 1.5.1-2+b5: the Debian revision is not in the binary's banner
    assert f"version {upstream}" in result.stdout + result.stderr, result.stdout + result.stderr

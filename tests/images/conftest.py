"""The built images, once per session: hack/build-images.sh (cached by a hash of its inputs, so a warm run
takes well under a second) and each image's root filesystem, unpacked on first use.

Without the images the tier skips, except under CI (env CI set) where a failed build fails the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .oci import Archive

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "hack" / "build-images.sh"
IMAGES = ("trainer", "operator", "pushgateway", "pause")


@dataclass(frozen=True)
class BuiltImage:
    name: str
    reference: str
    archive: Archive


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def built_images() -> dict[str, BuiltImage]:
    """Every image hack/build-images.sh prints (``name<TAB>reference<TAB>archive``), by name."""
    try:
        result = subprocess.run(
            ["bash", str(BUILD)], capture_output=True, text=True, timeout=3600, check=False, cwd=ROOT
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        _unavailable(f"hack/build-images.sh did not finish: {error}")
        raise
    if result.returncode != 0:
        _unavailable(f"hack/build-images.sh failed ({result.returncode}):\n{result.stderr[-4000:]}")
    images: dict[str, BuiltImage] = {}
    for line in result.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) == 3:
            name, reference, path = fields
            images[name] = BuiltImage(name, reference, Archive(Path(path)))
    assert set(images) == set(IMAGES), f"hack/build-images.sh printed {result.stdout!r}"
    return images


@pytest.fixture(scope="session")
def rootfs(
    built_images: dict[str, BuiltImage], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Path]]:
    """``rootfs(name)``: the image's root filesystem, unpacked once per session (the trainer's is ~1.5 GB)."""
    unpacked: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in unpacked:
            unpacked[name] = built_images[name].archive.unpack(tmp_path_factory.mktemp(f"rootfs-{name}"))
        return unpacked[name]

    yield get
    for folder in unpacked.values():  # gigabytes each: not left for pytest's three kept base temps
        shutil.rmtree(folder, ignore_errors=True)

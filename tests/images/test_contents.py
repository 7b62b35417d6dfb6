"""What the built images hold, read from their archives: test_dockerfiles.py checks the Dockerfiles,
these check what BuildKit made of them (and of Dockerfile.pushgateway and hack/pause.c)."""

from __future__ import annotations

import signal
import struct
import subprocess
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import ROOT, BuiltImage

pytestmark = pytest.mark.images

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
OCI_LABELS = ("title", "description", "source", "licenses", "version", "revision")
HEAVY = ("tensorflow", "tensorboard", "keras", "tf_keras", "nvidia", "tf2onnx", "onnx")


def site_packages(root: Path) -> Path:
    (found,) = (root / "opt/venv/lib").glob("python3.*/site-packages")
    return found


def distributions(root: Path) -> set[str]:
    """Normalised names of the distributions installed in the image's venv."""
    return {
        info.name.split("-")[0].lower().replace("_", "-") for info in site_packages(root).glob("*.dist-info")
    }


PT_DYNAMIC, PT_INTERP = 2, 3


def program_header_types(elf: bytes) -> set[int]:
    """The p_type of every program header of a 64-bit little-endian ELF file."""
    assert elf[:6] == b"\x7fELF\x02\x01", "not a 64-bit little-endian ELF file"
    (offset,) = struct.unpack_from("<Q", elf, 32)
    size, count = struct.unpack_from("<HH", elf, 54)
    return {struct.unpack_from("<I", elf, offset + n * size)[0] for n in range(count)}


@pytest.mark.parametrize("name", ["trainer", "operator", "pushgateway", "pause"])
def test_the_archive_names_the_image_for_ctr_import(name: str, built_images: dict[str, BuiltImage]) -> None:
    image = built_images[name]
    annotations = image.archive.descriptor.get("annotations", {})
    # `ctr images import` names the image after io.containerd.image.name; without it, after the bare tag.
    assert annotations.get("io.containerd.image.name") == image.reference
    assert image.archive.image_config["os"] == "linux"
    assert image.archive.image_config["architecture"] == "amd64"


def test_reference_names(built_images: dict[str, BuiltImage]) -> None:
    assert built_images["trainer"].reference == f"ghcr.io/mnist-operator/trainer:{VERSION}"
    assert built_images["operator"].reference == f"ghcr.io/mnist-operator/operator:{VERSION}"
    assert built_images["pause"].reference == "mnist-operator.local/pause:1.0"
    assert built_images["pushgateway"].reference.startswith("mnist-operator.local/pushgateway:")


@pytest.mark.parametrize(
    ("name", "entrypoint"), [("trainer", "mnist-trainer"), ("operator", "mnist-operator")]
)
def test_python_images_run_the_console_script_as_uid_1000(
    name: str, entrypoint: str, built_images: dict[str, BuiltImage], rootfs: Callable[[str], Path]
) -> None:
    config = built_images[name].archive.config
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == [entrypoint]
    assert built_images[name].archive.env["PATH"].startswith("/opt/venv/bin:")
    script = rootfs(name) / "opt/venv/bin" / entrypoint
    assert script.is_file(), f"{name}: no {script}"
    assert script.read_text().startswith("#!/opt/venv/bin/python"), script.read_text()[:100]
    # The passwd entry the Dockerfile adds, so pwd lookups of uid 1000 work.
    passwd = (rootfs(name) / "etc/passwd").read_text().splitlines()
    assert any(line.split(":")[2:4] == ["1000", "1000"] for line in passwd), passwd


@pytest.mark.parametrize("name", ["trainer", "operator"])
def test_oci_labels_are_set(name: str, built_images: dict[str, BuiltImage]) -> None:
    labels = built_images[name].archive.labels
    for label in OCI_LABELS:
        assert labels.get(f"org.opencontainers.image.{label}"), f"{name}: no {label} label in {labels}"
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"].startswith("https://")
    # hack/build-images.sh stamps the commit; "unknown" is only the Dockerfiles' default.
    assert labels["org.opencontainers.image.revision"] != "unknown"


def test_the_operator_image_has_no_tensorflow_or_keras(rootfs: Callable[[str], Path]) -> None:
    root = rootfs("operator")
    packages = site_packages(root)
    heavy = sorted(p.name for p in packages.iterdir() if p.name.lower().startswith(HEAVY))
    assert not heavy, heavy
    installed = distributions(root)
    assert {"kopf", "kubernetes", "aiohttp", "prometheus-client", "mnist-operator"} <= installed, installed
    assert (packages / "mnist_operator" / "cli.py").is_file()


def test_the_trainer_image_has_tensorflow_and_no_operator_packages(rootfs: Callable[[str], Path]) -> None:
    root = rootfs("trainer")
    packages = site_packages(root)
    assert (packages / "tensorflow" / "__init__.py").is_file()
    assert (packages / "keras" / "__init__.py").is_file()
    installed = distributions(root)
    assert "tensorflow-cpu" in installed, installed  # x86_64: the [trainer] extra's CPU build
    assert {"tf2onnx", "onnx"} <= installed, installed  # the onnx export format's converter
    assert not installed & {"kopf", "kubernetes", "aiohttp"}, installed
    assert not (packages / "kopf").exists()


def test_the_pushgateway_image(built_images: dict[str, BuiltImage], rootfs: Callable[[str], Path]) -> None:
    archive = built_images["pushgateway"].archive
    assert archive.config["User"] == "65534:65534"
    assert archive.config["Entrypoint"] == ["/usr/bin/prometheus-pushgateway"]
    assert built_images["pushgateway"].reference.endswith(
        archive.labels["org.opencontainers.image.version"].replace("+", "-").replace("~", "-")
    )
    root = rootfs("pushgateway")
    assert (root / "usr/bin/prometheus-pushgateway").is_file()
    assert "nobody:x:65534:" in (root / "etc/passwd").read_text()
    assert not (root / "bin/sh").exists() and not (root / "usr/bin/sh").exists(), "a shell crept in"


def test_the_pause_image_pauses_until_sigterm(
    built_images: dict[str, BuiltImage], rootfs: Callable[[str], Path]
) -> None:
    config = built_images["pause"].archive.config
    assert config["Entrypoint"] == ["/pause"]
    binary = rootfs("pause") / "pause"
    assert program_header_types(binary.read_bytes()).isdisjoint({PT_INTERP, PT_DYNAMIC}), "not static"
    for stop in (signal.SIGTERM, signal.SIGINT):
        process = subprocess.Popen([str(binary)])
        try:
            time.sleep(0.3)
            assert process.poll() is None, "pause exited on its own"
            process.send_signal(stop)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

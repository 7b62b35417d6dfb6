"""Finding the pinned control-plane binaries (built by hack/k8s-binaries.sh, never by the tests)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO / "hack" / "k8s-binaries.sh"
VERSIONS_FILE = REPO / "hack" / "k8s-versions.env"
REQUIRED = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
HOW_TO_BUILD = (
    "run `bash hack/k8s-binaries.sh` once (builds from source through the Go module proxy, "
    "about 6 min cold on 2 cores, cached afterwards) or point MNIST_K8S_BIN at a directory holding "
    + ", ".join(REQUIRED)
)


def pinned_versions() -> dict[str, str]:
    """KEY=VALUE pairs of hack/k8s-versions.env (the same file the build script sources)."""
    versions: dict[str, str] = {}
    for raw in VERSIONS_FILE.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


@dataclass(frozen=True)
class Binaries:
    dir: Path

    def __getitem__(self, name: str) -> Path:
        return self.dir / name

    @property
    def helm(self) -> Path | None:
        path = self.dir / "helm"
        return path if path.exists() else None


class BinariesMissingError(Exception):
    """The binaries are not there; the message says how to get them."""


def locate() -> Binaries:
    """MNIST_K8S_BIN if set, else the build script's cache, checked without building anything."""
    explicit = os.environ.get("MNIST_K8S_BIN")
    if explicit:
        directory = Path(explicit)
        missing = [n for n in REQUIRED if not os.access(directory / n, os.X_OK)]
        if missing:
            raise BinariesMissingError(f"MNIST_K8S_BIN={explicit} lacks {', '.join(missing)}; {HOW_TO_BUILD}")
        return Binaries(directory)
    # --check only verifies presence and `--version` output (about a second) and never builds:
    # a test run must not start a 15-minute compile behind the developer's back.
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise BinariesMissingError(f"control-plane binaries not built ({detail[0]}); {HOW_TO_BUILD}")
    return Binaries(Path(result.stdout.strip().splitlines()[-1]))

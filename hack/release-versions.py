#!/usr/bin/env python3
"""Check that every place naming the release version names the same one; print where a release goes.

A release is one version: the Python package's (pyproject.toml), the chart's `version` and `appVersion`
(the chart is pushed as an OCI artifact tagged with its `version`, and its default image tags follow
`appVersion`), the images' tags (`<version>` for the operator and the CPU trainer, `<version>-cuda` for
the CUDA trainer), and the places that write those tags out (the Dockerfiles' VERSION label, the
operator's default trainer image, the plain manifests, the chart's EKS values). A tag `v1.2.0` whose
files still say 1.1.0 would push images the chart does not ask for; the release workflow runs this first.

    python3 hack/release-versions.py                 # all files agree with each other
    python3 hack/release-versions.py --tag v0.1.0    # ... and with the git tag
    python3 hack/release-versions.py --tag v0.1.0 --github-output "$GITHUB_OUTPUT"

Exit 0 when everything agrees, 1 with one line per disagreement otherwise. Only the standard library and
PyYAML (which the release workflow installs) are needed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = Path("charts/mnist-operator")
SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")


@dataclass(frozen=True)
class Found:
    """One place that names a version: where, what it says, and the suffix it must carry."""

    where: str
    value: str
    suffix: str = ""


def _yaml(root: Path, relative: Path) -> dict[str, object]:
    loaded = yaml.safe_load((root / relative).read_text())
    if not isinstance(loaded, dict):
        raise SystemExit(f"{relative}: not a YAML mapping")
    return loaded


def _matches(root: Path, relative: str, pattern: str) -> list[str]:
    text = (root / relative).read_text()
    values = re.findall(pattern, text, flags=re.MULTILINE)
    if not values:
        raise SystemExit(f"{relative}: no match for {pattern!r}; update hack/release-versions.py")
    return values


def found_versions(root: Path) -> list[Found]:
    """Every version the repository names, in the order a reader would check them."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    chart = _yaml(root, CHART / "Chart.yaml")
    eks_values = _yaml(root, CHART / "ci/eks-gpu-values.yaml")
    eks_trainer = eks_values.get("trainer")
    eks_tag = eks_trainer.get("image", {}).get("tag") if isinstance(eks_trainer, dict) else None
    found = [
        Found("pyproject.toml [project] version", str(pyproject["project"]["version"])),
        Found(f"{CHART}/Chart.yaml version", str(chart["version"])),
        Found(f"{CHART}/Chart.yaml appVersion", str(chart["appVersion"])),
        Found(f"{CHART}/ci/eks-gpu-values.yaml trainer.image.tag", str(eks_tag), "-cuda"),
    ]
    for dockerfile in ("Dockerfile.operator", "Dockerfile.trainer"):
        for value in _matches(root, dockerfile, r"^ARG VERSION=(\S+)$"):
            found.append(Found(f"{dockerfile} ARG VERSION", value))
    config = "operator/mnist_operator/config.py"
    for value in _matches(root, config, r'^DEFAULT_TRAINER_IMAGE: Final = "[^":]+:([^"]+)"$'):
        found.append(Found(f"{config} DEFAULT_TRAINER_IMAGE", value))
    manifest = "manifests/operator.yaml"
    for image, value in _matches(root, manifest, r"ghcr\.io/mnist-operator/(\w+):(\S+)$"):
        found.append(Found(f"{manifest} {image} image", value))
    return found


def disagreements(found: list[Found], version: str) -> list[str]:
    """One readable line per place that does not name `version` (with its suffix)."""
    return [
        f"{item.where}: {item.value!r}, expected {version + item.suffix!r}"
        for item in found
        if item.value != version + item.suffix
    ]


def image_repositories(root: Path) -> dict[str, str]:
    """Where the images go: the chart's default repositories, so a release pushes exactly what a default
    `helm install` pulls."""
    values = _yaml(root, CHART / "values.yaml")
    operator = values["image"]
    trainer = values["trainer"]
    assert isinstance(operator, dict) and isinstance(trainer, dict)
    return {
        "operator_image": str(operator["repository"]),
        "trainer_image": str(trainer["image"]["repository"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", help="the git tag being released, e.g. v0.1.0")
    parser.add_argument("--github-output", type=Path, help="append version=... lines for later jobs")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    found = found_versions(args.root)
    version = found[0].value
    if args.tag is not None:
        if not args.tag.startswith("v") or not SEMVER.match(args.tag[1:]):
            print(f"tag {args.tag!r} is not v<semver>, e.g. v0.1.0", file=sys.stderr)
            return 1
        version = args.tag[1:]
    problems = disagreements(found, version)
    if problems:
        print(f"release version {version}: {len(problems)} place(s) disagree", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1

    repositories = image_repositories(args.root)
    registry = repositories["operator_image"].rsplit("/", 1)[0]
    outputs = {"version": version, **repositories, "chart_registry": f"oci://{registry}/charts"}
    for key, value in outputs.items():
        print(f"{key}={value}")
    if args.github_output is not None:
        with args.github_output.open("a") as sink:
            sink.writelines(f"{key}={value}\n" for key, value in outputs.items())
    return 0


if __name__ == "__main__":
    sys.exit(main())

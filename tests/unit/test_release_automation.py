"""The release automation: the version check the release workflow runs first, and what the workflow
publishes against what the chart pulls by default."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "hack" / "release-versions.py"
WORKFLOWS = ROOT / ".github" / "workflows"
# Every file the check reads; a copy of these is a repository as far as the check knows.
INPUTS = (
    "pyproject.toml",
    "charts/mnist-operator/Chart.yaml",
    "charts/mnist-operator/values.yaml",
    "charts/mnist-operator/ci/eks-gpu-values.yaml",
    "Dockerfile.operator",
    "Dockerfile.trainer",
    "operator/mnist_operator/config.py",
    "manifests/operator.yaml",
)


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECK), *args], capture_output=True, text=True, check=False)


def chart() -> dict[str, str]:
    loaded: dict[str, str] = yaml.safe_load((ROOT / "charts/mnist-operator/Chart.yaml").read_text())
    return loaded


@pytest.fixture
def copy_of_repository(tmp_path: Path) -> Path:
    for relative in INPUTS:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, tmp_path / relative)
    return tmp_path


def test_the_repository_agrees_with_its_own_version_and_says_where_a_release_goes() -> None:
    version = chart()["appVersion"]
    result = run_check("--tag", f"v{version}")
    assert result.returncode == 0, result.stderr
    outputs = dict(line.split("=", 1) for line in result.stdout.splitlines())
    values = yaml.safe_load((ROOT / "charts/mnist-operator/values.yaml").read_text())
    assert outputs == {
        "version": version,
        "operator_image": values["image"]["repository"],
        "trainer_image": values["trainer"]["image"]["repository"],
        "chart_registry": "oci://" + values["image"]["repository"].rsplit("/", 1)[0] + "/charts",
    }


def test_a_tag_ahead_of_the_files_names_every_file_to_bump() -> None:
    result = run_check("--tag", "v99.0.0")
    assert result.returncode == 1
    for place in ("pyproject.toml", "Chart.yaml version", "Chart.yaml appVersion", "eks-gpu-values.yaml"):
        assert place in result.stderr
    assert "expected '99.0.0-cuda'" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("tag", ["0.1.0", "v0.1", "release-1"])
def test_a_tag_that_is_not_a_version_is_refused(tag: str) -> None:
    result = run_check("--tag", tag)
    assert result.returncode == 1
    assert "is not v<semver>" in result.stderr


@pytest.mark.parametrize(
    ("relative", "old", "new", "reported"),
    [
        (
            "charts/mnist-operator/Chart.yaml",
            'appVersion: "{v}"',
            'appVersion: "9.9.9"',
            "Chart.yaml appVersion",
        ),
        ("operator/mnist_operator/config.py", "trainer:{v}", "trainer:9.9.9", "DEFAULT_TRAINER_IMAGE"),
        (
            "manifests/operator.yaml",
            "operator:{v}",
            "operator:9.9.9",
            "manifests/operator.yaml operator image",
        ),
        ("Dockerfile.trainer", "ARG VERSION={v}", "ARG VERSION=9.9.9", "Dockerfile.trainer ARG VERSION"),
    ],
)
def test_one_file_left_behind_fails_the_check(
    copy_of_repository: Path, relative: str, old: str, new: str, reported: str
) -> None:
    version = chart()["appVersion"]
    path = copy_of_repository / relative
    text = path.read_text()
    assert old.format(v=version) in text
    path.write_text(text.replace(old.format(v=version), new))
    result = run_check("--root", str(copy_of_repository))
    assert result.returncode == 1
    assert reported in result.stderr
    assert "'9.9.9', expected" in result.stderr


def test_the_release_builds_every_image_the_chart_pulls_by_default() -> None:
    """`helm install` with default values pulls <operator>:<appVersion> and <trainer>:<appVersion>; the EKS
    GPU values pull <trainer>:<appVersion>-cuda. Each must be a row of the release's image matrix."""
    release = yaml.safe_load((WORKFLOWS / "release.yml").read_text())
    rows = release["jobs"]["images"]["strategy"]["matrix"]["include"]
    built = {(row["component"], row["suffix"]) for row in rows}
    assert built == {("operator", ""), ("trainer", ""), ("trainer", "-cuda")}
    platforms = {(row["component"], row["suffix"]): row["platforms"].split(",") for row in rows}
    assert platforms[("operator", "")] == ["linux/amd64", "linux/arm64"]
    assert platforms[("trainer", "-cuda")] == ["linux/amd64"]
    images = release["jobs"]["images"]
    assert images["needs"] == ["versions", "ci"], "nothing is pushed before the versions check and CI pass"
    build = next(step for step in images["steps"] if step.get("id") == "build")
    assert build["with"]["provenance"] == "mode=max"

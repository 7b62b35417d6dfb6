"""The Helm chart ships the CRD generated from the models; its copy must not drift."""

from pathlib import Path

import yaml

from mnist_api.crd import render_crd

REPO = Path(__file__).resolve().parents[2]
CHART_CRDS = REPO / "charts" / "mnist-operator" / "crds"
HOW_TO_FIX = "run `bash hack/sync-chart-crd.sh` (or `python -m mnist_api.crd > {path}`)"


def test_chart_crd_matches_the_models() -> None:
    path = CHART_CRDS / "mnisttrainings.yaml"
    # Byte for byte, like manifests/crd.yaml: the header says "generated, do not edit" and must stay true.
    assert path.read_text() == render_crd(), f"{path.relative_to(REPO)} is stale: " + HOW_TO_FIX.format(
        path=path.relative_to(REPO)
    )


def test_chart_ships_only_the_generated_crd() -> None:
    # helm installs every file in crds/ and never upgrades or deletes them: a stray or hand-written CRD
    # here would be installed once and then silently left behind.
    assert sorted(p.name for p in CHART_CRDS.iterdir()) == ["mnisttrainings.yaml"]
    (crd,) = [doc for doc in yaml.safe_load_all((CHART_CRDS / "mnisttrainings.yaml").read_text()) if doc]
    assert crd["kind"] == "CustomResourceDefinition"

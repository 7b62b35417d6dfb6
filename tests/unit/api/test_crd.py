"""The CRD is generated from the models; the checked-in copy must not drift."""

from pathlib import Path
from typing import Any

import yaml

from mnist_api import API_VERSION, KIND, MnistTraining, ObjectMeta
from mnist_api.crd import build_crd, render_crd
from mnist_api.spec import MnistTrainingSpec

REPO = Path(__file__).resolve().parents[3]


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, child in schema.get("properties", {}).items():
        found += walk(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += walk(schema[key], f"{path}[{key}]")
    return found


def spec_schema() -> dict[str, Any]:
    schema: dict[str, Any] = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_checked_in_crd_matches_the_models() -> None:
    checked_in = (REPO / "manifests" / "crd.yaml").read_text()
    assert checked_in == render_crd(), "manifests/crd.yaml is stale: run `make crd`"


def test_schema_is_structural() -> None:
    for path, node in walk(spec_schema()):
        assert "type" in node or path == "", f"{path} has no type"
        assert not {"anyOf", "oneOf", "allOf", "$ref", "$defs", "title"} & node.keys(), path
        assert not ("properties" in node and "additionalProperties" in node), path
        if node.get("exclusiveMinimum") is not None:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path


def test_every_spec_field_is_in_the_schema_with_its_camel_case_name() -> None:
    properties = spec_schema()["properties"]["spec"]["properties"]
    assert set(properties) == {f.alias for f in MnistTrainingSpec.model_fields.values()}


def test_schema_defaults_are_the_model_defaults() -> None:
    properties = spec_schema()["properties"]["spec"]["properties"]
    defaults = MnistTrainingSpec().model_dump(mode="json", by_alias=True)
    for name in ("model", "epochs", "batchSize", "learningRate", "optimizer", "validationSplit"):
        assert properties[name]["default"] == defaults[name], name
    assert (
        properties["metrics"]["properties"]["histogramBuckets"]["default"]
        == defaults["metrics"]["histogramBuckets"]
    )
    assert "default" not in properties["earlyStopping"], "early stopping must stay off unless asked for"


def test_bounds_reach_the_schema() -> None:
    properties = spec_schema()["properties"]["spec"]["properties"]
    assert (properties["epochs"]["minimum"], properties["epochs"]["maximum"]) == (1, 1000)
    assert (
        properties["learningRate"]["exclusiveMinimum"] is True and properties["learningRate"]["maximum"] == 10
    )
    assert properties["optimizer"]["enum"] == ["adam", "adamw", "rmsprop", "sgd"]


def test_the_manifest_model_spells_the_resource_names_right() -> None:
    blank = MnistTraining(metadata=ObjectMeta(name="x"))
    assert (blank.api_version, blank.kind) == (API_VERSION, KIND)


def test_printer_columns_and_names() -> None:
    crd = yaml.safe_load(render_crd())
    version = crd["spec"]["versions"][0]
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Phase", "Epoch", "Accuracy", "Val-Acc", "Loss", "Age"]
    assert version["subresources"] == {"status": {}}
    assert crd["spec"]["names"]["shortNames"] and crd["spec"]["names"]["categories"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["properties"]["conditions"]["x-kubernetes-list-map-keys"] == ["type"]


def test_kubectl_explain_describes_every_status_field() -> None:
    status = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    undescribed: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        for name, prop in (node.get("properties") or {}).items():
            if not prop.get("description"):
                undescribed.append(f"{path}.{name}")
            walk(prop, f"{path}.{name}")
        if "items" in node:
            walk(node["items"], f"{path}[]")

    walk(status, "status")
    assert not undescribed, f"no description for kubectl explain: {undescribed}"
    assert status["properties"]["conditions"]["items"]["properties"]["reason"]["description"]

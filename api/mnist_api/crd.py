"""Generate the MnistTraining CustomResourceDefinition from the pydantic models.

``python -m mnist_api.crd > manifests/crd.yaml`` (``make crd``); a test fails if the checked-in copies
drift. The schema is structural and complete: every bound and enum of the models is enforced by the API
server, so ``kubectl apply`` refuses bad input before any pod exists.
"""

import sys
from typing import Any

import yaml
from pydantic import BaseModel

from .resource import CATEGORIES, CRD_NAME, GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION
from .spec import MnistTrainingSpec
from .status import MnistTrainingStatus

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Epoch", "type": "string", "jsonPath": ".status.progress"},
    {"name": "Accuracy", "type": "number", "jsonPath": ".status.accuracy"},
    {"name": "Val-Acc", "type": "number", "jsonPath": ".status.valAccuracy"},
    {"name": "Loss", "type": "number", "jsonPath": ".status.loss"},
    {"name": "Test-Acc", "type": "number", "jsonPath": ".status.testAccuracy", "priority": 1},
    {"name": "Pod", "type": "string", "jsonPath": ".status.podName", "priority": 1},
    {"name": "Model", "type": "string", "jsonPath": ".status.modelPath", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

_DROPPED_KEYS = {"title", "$defs"}


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A Kubernetes structural schema (OpenAPI v3 subset) for a pydantic model."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    converted: dict[str, Any] = _convert(schema, schema.get("$defs", {}))
    return converted


def _convert(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_convert(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**target, **node}
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        # Optional[X] is X that may be omitted; Kubernetes has no union types.
        choices = [c for c in any_of if c.get("type") != "null"]
        if len(choices) != 1:
            raise ValueError(f"cannot express a union of {choices} in a structural schema")
        node = {**_convert(choices[0], defs), **node}
        if "default" in node and node["default"] is None:
            del node["default"]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        elif key == "additionalProperties" and value is False:
            # extra="forbid": Kubernetes already refuses unknown fields (strict field validation) and
            # a structural schema may not combine additionalProperties with properties.
            continue
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out[key.replace("exclusiveM", "m")] = value
            out[key] = True
        elif key == "properties":
            out[key] = {name: _convert(prop, defs) for name, prop in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _convert(value, defs)
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if out.get("type") == "object" and "properties" in out:
        for name, prop in out["properties"].items():
            # A part that is always present (not Optional in the model) defaults to {} so the API server
            # fills in its own defaults; an Optional part (earlyStopping) stays absent unless asked for.
            always_present = "anyOf" not in node["properties"][name] and name not in out.get("required", [])
            if prop.get("type") == "object" and "properties" in prop and always_present:
                prop.setdefault("default", {})
    return out


def _status_schema() -> dict[str, Any]:
    schema: dict[str, Any] = openapi_schema(MnistTrainingStatus)
    conditions = schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return schema


def build_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/part-of": "mnist-operator"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "Trains a Keras CNN on MNIST or Fashion-MNIST as a Kubernetes Job.",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": {**openapi_schema(MnistTrainingSpec), "default": {}},
                                "status": _status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crd() -> str:
    header = "# Generated by `python -m mnist_api.crd` from mnist_api's models. Do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=110)


def main() -> None:
    sys.stdout.write(render_crd())


if __name__ == "__main__":
    main()

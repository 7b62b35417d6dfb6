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
from .spec import (
    MODEL_SIZE_NEEDS_KERAS,
    MODEL_SIZE_NEEDS_KERAS_RULE,
    TASK_RULES,
    WARMUP_SHORTER_THAN_RUN,
    WARMUP_SHORTER_THAN_RUN_RULE,
    MetricsSpec,
    MnistTrainingSpec,
    RunPolicySpec,
)
from .status import MnistTrainingStatus

DESCRIPTION = "Trains, evaluates or predicts with a Keras model on MNIST-like images, as a Kubernetes Job."
PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Task", "type": "string", "jsonPath": ".spec.task", "priority": 1},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Epoch", "type": "string", "jsonPath": ".status.progress"},
    {"name": "Accuracy", "type": "number", "jsonPath": ".status.accuracy"},
    {"name": "Val-Acc", "type": "number", "jsonPath": ".status.valAccuracy"},
    {"name": "Loss", "type": "number", "jsonPath": ".status.loss"},
    {"name": "Test-Acc", "type": "number", "jsonPath": ".status.testAccuracy", "priority": 1},
    {"name": "Predicted", "type": "integer", "jsonPath": ".status.predictedImages", "priority": 1},
    {"name": "Workers", "type": "string", "jsonPath": ".status.workerReadiness", "priority": 1},
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


# What the operator re-reads on an update (handlers.py: suspend_changed, the ttl timer); every other
# field is baked into the Job at creation, so an edit would make the status describe a Job that does
# not run (issue 12 item 3). Kubernetes refuses edits of a Job's pod template the same way.
EDITABLE_RUN_POLICY = ("suspend", "ttlSecondsAfterFinished")


def immutability_rules() -> list[dict[str, str]]:
    """CEL transition rules: spec fields the Job cannot honour after creation may not change."""
    fields = [info.alias or name for name, info in MnistTrainingSpec.model_fields.items()]
    run_policy = [
        info.alias or name
        for name, info in RunPolicySpec.model_fields.items()
        if (info.alias or name) not in EDITABLE_RUN_POLICY
    ]
    rules = [
        _unchanged(f"self.{f}", f"oldSelf.{f}", f"spec.{f}")
        for f in fields
        if f not in ("runPolicy", "metrics")
    ]
    # A whole-object comparison of metrics fails for histogramBuckets: a stored 0.0 comes back as the
    # integer 0 and CEL's int 0 != double 0.0, so that list is compared as doubles.
    for name, info in MetricsSpec.model_fields.items():
        f = info.alias or name
        rule = _unchanged(f"self.metrics.{f}", f"oldSelf.metrics.{f}", f"spec.metrics.{f}")
        if f == "histogramBuckets":
            rule["rule"] = rule["rule"].replace(
                f"self.metrics.{f} == oldSelf.metrics.{f}",
                f"self.metrics.{f}.map(b, double(b)) == oldSelf.metrics.{f}.map(b, double(b))",
            )
        rules.append(rule)
    rules += [
        _unchanged(f"self.runPolicy.{f}", f"oldSelf.runPolicy.{f}", f"spec.runPolicy.{f}") for f in run_policy
    ]
    return rules


def _unchanged(new: str, old: str, path: str) -> dict[str, str]:
    parent_new, _, leaf = new.rpartition(".")
    parent_old = old.rpartition(".")[0]
    present_new, present_old = f"has({parent_new}.{leaf})", f"has({parent_old}.{leaf})"
    if parent_new != "self":  # nested: the parent (runPolicy) is defaulted, but may be absent in old objects
        present_new = f"has({parent_new}) && {present_new}"
        present_old = f"has({parent_old}) && {present_old}"
    return {
        "rule": f"({present_new}) == ({present_old}) && (!({present_new}) || {new} == {old})",
        "message": f"{path} is immutable: the training's Job cannot change it; delete and re-create the "
        "training to change it (runPolicy.suspend and runPolicy.ttlSecondsAfterFinished may be edited)",
    }


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
                            "description": DESCRIPTION,
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": {
                                    **openapi_schema(MnistTrainingSpec),
                                    "default": {},
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": MODEL_SIZE_NEEDS_KERAS_RULE,
                                            "message": MODEL_SIZE_NEEDS_KERAS,
                                        },
                                        *({"rule": r, "message": m} for r, m in TASK_RULES),
                                        {
                                            "rule": WARMUP_SHORTER_THAN_RUN_RULE,
                                            "message": WARMUP_SHORTER_THAN_RUN,
                                        },
                                        *immutability_rules(),
                                    ],
                                },
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

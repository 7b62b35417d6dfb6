"""Load ``MnistTraining`` manifests, turning any mistake into a readable error (never a traceback).

Messages follow the API server's wording (``spec.epochs: Invalid value: 0: spec.epochs in body should be
greater than or equal to 1``) so a manifest refused by local mode reads the same as when
``kubectl apply`` refuses it. Validation is strict as the API server is: ``epochs: "5"`` is a string,
not an integer.
"""

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from .manifest import MnistTraining
from .resource import API_VERSION, KIND


class ManifestError(ValueError):
    """A manifest that cannot become an MnistTraining; ``str()`` is the full user-facing message."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


def load_manifests(text: str, *, source: str = "<manifest>") -> list[MnistTraining]:
    """Every MnistTraining in a (multi-document) YAML text; other kinds are an error, not ignored."""
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        raise ManifestError(f"{source}: not valid YAML: {_yaml_problem(error)}") from None
    if not documents:
        raise ManifestError(f"{source}: holds no MnistTraining (the file is empty)")
    return [_load_document(doc, source) for doc in documents]


def load_manifest_file(path: str | Path) -> list[MnistTraining]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ManifestError(f"{path}: cannot read: {error.strerror}") from None
    return load_manifests(text, source=str(path))


def validate_resource(document: dict[str, Any]) -> MnistTraining:
    """Validate an object as read from the API server or a manifest."""
    return _load_document(document, "<object>")


def _load_document(document: Any, source: str) -> MnistTraining:
    if not isinstance(document, dict):
        raise ManifestError(f"{source}: expected a YAML mapping, found {type(document).__name__}")
    kind, api_version = document.get("kind"), document.get("apiVersion")
    if kind != KIND or api_version != API_VERSION:
        raise ManifestError(
            f"{source}: expected apiVersion: {API_VERSION} and kind: {KIND}, "
            f"found apiVersion: {api_version} and kind: {kind}"
        )
    name = (document.get("metadata") or {}).get("name", "")
    try:
        # Through JSON so that strict mode accepts enum strings but refuses "5" for an integer.
        return MnistTraining.model_validate_json(json.dumps(document, default=str), strict=True)
    except ValidationError as error:
        problems = [format_problem(e) for e in error.errors()]
        header = f'The {KIND} "{name}" is invalid: '
        body = problems[0] if len(problems) == 1 else "\n" + "\n".join(f"* {p}" for p in problems)
        raise ManifestError(f"{source}: {header}{body}", problems) from None


def format_problem(error: ErrorDetails) -> str:
    """One pydantic error in the API server's words."""
    path = _field_path(error["loc"])
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    shown = _show(value)
    if kind == "missing":
        return f"{path}: Required value"
    if kind == "extra_forbidden":
        return f'{path}: unknown field "{path}" (not in the {KIND} schema; check its spelling)'
    if kind in ("enum", "literal_error"):
        choices = str(ctx.get("expected", "")).replace(" or ", ", ").replace("'", '"')
        return f"{path}: Unsupported value: {shown}: supported values: {choices}"
    bounds = {
        "greater_than_equal": ("greater than or equal to", "ge"),
        "greater_than": ("greater than", "gt"),
        "less_than_equal": ("less than or equal to", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"{path}: Invalid value: {shown}: {path} in body should be {words} {_number(ctx.get(key))}"
    if kind == "string_pattern_mismatch":
        return f"{path}: Invalid value: {shown}: {path} in body should match '{ctx.get('pattern')}'"
    if kind in ("string_too_long", "too_long"):
        return f"{path}: Too long: may not be more than {ctx.get('max_length')}"
    if kind in ("string_too_short", "too_short"):
        return f"{path}: Invalid value: {shown}: {path} in body should have at least {ctx.get('min_length')} items"
    type_names = {
        "int_type": "integer",
        "int_from_float": "integer",
        "float_type": "number",
        "string_type": "string",
        "bool_type": "boolean",
        "list_type": "array",
        "dict_type": "object",
        "model_type": "object",
    }
    if kind in type_names:
        return f"{path}: Invalid value: {shown}: {path} in body must be of type {type_names[kind]}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{path}: Invalid value: {shown}: {message}"


def _field_path(loc: Iterable[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "<root>"


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict | list):
        text = json.dumps(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return problem

"""Load ``MnistTraining`` manifests, turning any mistake into a readable error (never a traceback).

Messages follow the API server's wording (``spec.epochs: Invalid value: 0: spec.epochs in body should be
greater than or equal to 1``) so a manifest refused by local mode reads the same as when
``kubectl apply`` refuses it. Validation is strict as the API server is: ``epochs: "5"`` is a string,
not an integer.
"""

import json
import math
import re
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
        documents = [doc for doc in yaml.load_all(text, Loader=KubectlLoader) if doc is not None]
    except yaml.YAMLError as error:
        raise ManifestError(f"{source}: not valid YAML: {_yaml_problem(error)}") from None
    for document in documents:
        # kubectl converts the whole file to JSON first, and JSON has no infinities or NaN: it refuses the
        # file before sending anything (validation alone would let `.inf` through a bound like gt=0).
        if (value := _non_finite(document)) is not None:
            raise ManifestError(f"{source}: error converting YAML to JSON: json: unsupported value: {value}")
    if not documents:
        raise ManifestError(f"{source}: holds no MnistTraining (the file is empty)")
    return [_load_document(doc, source) for doc in documents]


def load_value(text: str, *, source: str) -> Any:
    """One YAML value (``--set PATH=VALUE``), read as kubectl would read it in a manifest."""
    try:
        value = yaml.load(text, Loader=KubectlLoader)
    except yaml.YAMLError as error:
        raise ManifestError(f"{source}: not valid YAML: {_yaml_problem(error)}") from None
    if (spelt := _non_finite(value)) is not None:
        raise ManifestError(f"{source}: error converting YAML to JSON: json: unsupported value: {spelt}")
    return value


class KubectlLoader(yaml.SafeLoader):
    """Resolves plain scalars as kubectl does, not as PyYAML's YAML 1.1 does.

    kubectl turns YAML into JSON with sigs.k8s.io/yaml, whose resolver is go-yaml v2's: ``1e-3`` is a
    number (a string for PyYAML), ``yes``/``on`` are booleans, ``0x10`` and ``1_000`` are integers.
    Scalars are resolved here by :func:`_resolve_plain` so the rules live in one place.
    """


# go-yaml v2's resolve table and float syntax (resolve.go), which sigs.k8s.io/yaml uses.
_GO_BOOL = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
}
_GO_NULL = {"", "~", "null", "Null", "NULL"}
_GO_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_GO_SPECIAL_FLOAT = {
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_GO_INT = re.compile(r"^[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$")


def _resolve_plain(value: str) -> Any:
    if value in _GO_NULL:
        return None
    if value in _GO_BOOL:
        return _GO_BOOL[value]
    if value in _GO_SPECIAL_FLOAT:
        return _GO_SPECIAL_FLOAT[value]
    plain = value.replace("_", "")
    if _GO_INT.match(plain):
        sign = -1 if plain.startswith("-") else 1
        digits = plain.lstrip("+-")
        if len(digits) > 1 and digits[0] == "0" and digits[1] not in "xXoObB":
            number = int(digits, 8)  # Go's base-0 ParseInt: a leading 0 means octal
        else:
            number = int(digits, 0)
        if -(2**63) <= sign * number < 2**64:
            return sign * number
    if _GO_FLOAT.match(plain) and math.isfinite(as_float := float(plain)):
        return as_float  # out of float64's range, Go's ParseFloat fails and go-yaml keeps the string
    return value


def _construct_plain_or_quoted(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    if node.style is None:  # plain scalar: resolve like go-yaml; quoted ones stay strings
        return _resolve_plain(node.value)
    return node.value


# Drop PyYAML's YAML 1.1 implicit resolvers; every plain scalar is resolved by _resolve_plain instead.
KubectlLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag == "tag:yaml.org,2002:merge"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
KubectlLoader.add_constructor("tag:yaml.org,2002:str", _construct_plain_or_quoted)


def _non_finite(value: Any) -> str | None:
    """The first infinity or NaN in a document, spelt as Go's JSON encoder names it."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return next((found for item in value if (found := _non_finite(item)) is not None), None)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    return None


def _as_sent(value: Any) -> Any:
    """The object as ``kubectl apply`` sends it and the server stores it: nulls pruned (apply drops a null
    even under an unknown key; the server then applies defaults), integral floats as JSON integers (Go's
    JSON encoder writes ``1.0`` as ``1``, so ``batchSize: 1.0`` arrives as an integer)."""
    if isinstance(value, dict):
        return {key: _as_sent(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_as_sent(item) for item in value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


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
        return MnistTraining.model_validate_json(json.dumps(_as_sent(document), default=str), strict=True)
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

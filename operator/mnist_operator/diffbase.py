"""kopf's diff base (the "essence" it compares to detect changes), built without copying what it drops.

For every watch event of every kind, kopf's ``DiffBaseStorage.build`` deep-copies the whole body and
then deletes ``status`` and ``metadata`` (keeping labels and annotations). On a real API server those are
the bulk of an object: managedFields on everything, our own status on MnistTrainings. At 1,000 trainings
that copying was the largest single cost in the operator's event loop (`python -m bench.operator_scale`, its
``--profile``). The essence is the same: kopf's own ``build`` runs on a view without the parts it would
delete.
"""

from collections.abc import Iterable
from typing import Any, cast

import kopf

# Metadata kopf keeps in the essence; everything else under metadata it deletes.
_KEPT_METADATA = ("labels", "annotations")


class LeanAnnotationsDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        extra = list(extra_fields or [])
        if any(_names_dropped_part(field) for field in extra):
            return super().build(body=body, extra_fields=extra)  # a handler asked for status or metadata
        raw = {key: value for key, value in body.items() if key != "status"}
        metadata = body.get("metadata") or {}
        raw["metadata"] = {key: metadata[key] for key in _KEPT_METADATA if key in metadata}
        return super().build(body=kopf.Body(cast(kopf.RawBody, raw)), extra_fields=extra)


def _names_dropped_part(field: Any) -> bool:
    if field is None:
        return False
    path = field.split(".") if isinstance(field, str) else list(field)
    return bool(path) and (path[0] == "status" or (path[0] == "metadata" and path[1:2] != ["labels"]))

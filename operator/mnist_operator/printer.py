"""Render MnistTrainings as ``kubectl get mnisttrainings`` does, from the CRD's own printer columns.

The columns come from ``mnist_api.crd.PRINTER_COLUMNS``, the same list the API server serves, so local
mode and the cluster can never disagree on what is shown.
"""

import datetime
from collections.abc import Mapping
from typing import Any

from mnist_api.crd import PRINTER_COLUMNS


def columns(wide: bool = False) -> list[dict[str, Any]]:
    return [c for c in PRINTER_COLUMNS if wide or not c.get("priority")]


def lookup(document: Mapping[str, Any], json_path: str) -> Any:
    """The value at a simple JSONPath (``.status.phase``), or None."""
    node: Any = document
    for part in json_path.strip(".").split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def human_age(since: str, now: datetime.datetime) -> str:
    """kubectl's short durations (apimachinery's HumanDuration): 45s, 3m12s, 125m, 3h5m, 20h, 3d4h."""
    start = datetime.datetime.fromisoformat(since.replace("Z", "+00:00"))
    seconds = max(0, int((now - start).total_seconds()))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def cells(document: Mapping[str, Any], now: datetime.datetime, wide: bool = False) -> list[str]:
    row = [str(lookup(document, ".metadata.name") or "")]
    for column in columns(wide):
        value = lookup(document, column["jsonPath"])
        if value is None:
            row.append("")
        elif column["type"] == "date":
            row.append(human_age(str(value), now))
        else:
            row.append(str(value))
    return row


def header(wide: bool = False) -> list[str]:
    return ["NAME", *(c["name"].upper() for c in columns(wide))]

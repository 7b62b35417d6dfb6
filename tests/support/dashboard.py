"""The chart's Grafana dashboard, read the way Grafana reads it: its panels' PromQL with the dashboard
variables filled in, evaluated by a real Prometheus, and drawn to a PNG (matplotlib; Grafana itself
cannot run here) so a person can look at what each panel shows."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.prometheus import Prometheus

# Grafana's built-in interval variables, and the value each gets for a short test run.
BUILTINS = {"$__rate_interval": "1m", "$__interval": "15s"}


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    kind: str
    legend: str
    expr: str
    instant: bool
    heatmap: bool


def panel_queries(dashboard: dict[str, Any], variables: dict[str, str]) -> list[PanelQuery]:
    """Every target of every panel (rows excluded), with ``$name`` replaced by ``variables[name]``."""
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    assert set(variables) <= defined, f"not dashboard variables: {set(variables) - defined}"
    substitutions = {**BUILTINS, **{f"${name}": value for name, value in variables.items()}}
    pattern = re.compile("|".join(re.escape(k) for k in sorted(substitutions, key=len, reverse=True)))
    queries = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        for target in panel["targets"]:
            expr = pattern.sub(lambda m: substitutions[m.group(0)], target["expr"])
            assert "$" not in expr, f"{panel['title']}: unresolved variable in {expr}"
            queries.append(
                PanelQuery(
                    panel["title"],
                    panel["type"],
                    target.get("legendFormat", ""),
                    expr,
                    target.get("instant", False),
                    target.get("format") == "heatmap",
                )
            )
    return queries


def _legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template) or str(labels)


def render_png(
    prometheus: Prometheus,
    dashboard: dict[str, Any],
    variables: dict[str, str],
    start: float,
    end: float,
    path: Path,
) -> None:
    """One subplot per panel, laid out on the dashboard's 24-column grid order: lines for time series,
    horizontal bars for bar gauges (their last value), as Grafana shows them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    queries = panel_queries(dashboard, variables)
    titles = list(dict.fromkeys(q.panel for q in queries))
    columns = 3
    rows = math.ceil(len(titles) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 3.6 * rows), squeeze=False)
    figure.suptitle(
        f"{dashboard['title']} — " + ", ".join(f"{k}={v}" for k, v in variables.items()), fontsize=11
    )
    step = max(1.0, (end - start) / 200)
    for axis, title in zip(axes.flat, titles, strict=False):
        axis.set_title(title, fontsize=10)
        panel_queries_of = [q for q in queries if q.panel == title]
        if panel_queries_of[0].kind == "bargauge":
            names: list[str] = []
            values: list[float] = []
            for query in panel_queries_of:
                for series in prometheus.query(query.expr):
                    names.append(_legend(query.legend, series["metric"]))
                    values.append(float(series["value"][1]))
            if panel_queries_of[0].heatmap:
                # Grafana's heatmap format: buckets in bound order, each its own count (Prometheus'
                # buckets are cumulative).
                order = sorted(range(len(names)), key=lambda i: float(names[i]))
                names, cumulative = [names[i] for i in order], [values[i] for i in order]
                values = [
                    count - below for count, below in zip(cumulative, [0.0, *cumulative[:-1]], strict=True)
                ]
            axis.barh(names, values, color="#3274d9")
            axis.tick_params(axis="y", labelsize=7)
            axis.invert_yaxis()
        else:
            for query in panel_queries_of:
                for series in prometheus.query_range(query.expr, start, end, step):
                    times = [float(t) - start for t, _ in series["values"]]
                    axis.plot(
                        times,
                        [float(v) for _, v in series["values"]],
                        label=_legend(query.legend, series["metric"]),
                    )
            axis.set_xlabel("seconds", fontsize=8)
            axis.legend(fontsize=7, loc="best")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(titles) :]:
        axis.axis("off")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)

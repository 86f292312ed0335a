"""Render DVC's plots and metrics to a self-contained HTML page that needs no internet.

`dvc plots show` / `dvc plots diff` build an HTML page that loads Vega from a CDN. Here the
Vega-Lite specs DVC fills with data (`dvc plots show --json`, or `dvc plots diff --json REV...`
to compare commits and experiments: a colour per revision) are rendered to SVG by vl-convert (a
bundled engine, no network), with a log y axis where the values span two decades or more, and
the page embeds them inline beside a table of the metrics of each revision.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .files import write_text_atomic
from .metric_files import is_number


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


LOG_SPAN = 100.0  # max / min of a positive y field from which the axis is logarithmic


def _numbers(values: list, field: str) -> list[float]:
    out = []
    for row in values:
        try:
            out.append(float(row[field]))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def with_log_axes(spec: dict) -> dict:
    """``spec`` with a log-scaled y wherever its field's values are positive and span at least
    :data:`LOG_SPAN` (losses that fall by orders of magnitude; several curves on one chart)."""
    values = (spec.get("data") or {}).get("values") or []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            y = (node.get("encoding") or {}).get("y")
            if isinstance(y, dict) and y.get("field") and "scale" not in y:
                numbers = _numbers(values, y["field"])
                if numbers and min(numbers) > 0 and max(numbers) / min(numbers) >= LOG_SPAN:
                    y["scale"] = {"type": "log"}
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(spec)
    return spec


def _metrics_table(metrics_json: Mapping) -> str:
    rows = []
    for rev, files in metrics_json.items():
        for path, content in (files.get("data") or {}).items():
            flat: dict[str, Any] = {}
            _flatten("", content.get("data", {}), flat)
            for key, value in flat.items():
                if is_number(value):
                    shown = f"{value:.6g}" if isinstance(value, float) else str(value)
                    cells = (rev, path, key, shown)
                    rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells))
    head = "<tr><th>revision</th><th>file</th><th>metric</th><th>value</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def render(
    plots_json: Mapping, metrics_json: Mapping, out_dir: str | os.PathLike
) -> tuple[Path, list[str]]:
    """Write ``out_dir/index.html`` (inline SVG charts + metrics table) and one SVG per plot;
    returns the page and the names of plots DVC could not load (listed on the page too)."""
    import vl_convert

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures, problems = [], []
    for error in plots_json.get("errors", []):
        problems.append(f"{error.get('name')}: {error.get('msg')}")
    for i, (name, items) in enumerate(sorted((plots_json.get("data") or {}).items())):
        for item in items:
            if item.get("type") != "vega":
                continue
            svg = vl_convert.vegalite_to_svg(with_log_axes(item["content"]))
            write_text_atomic(out / f"plot_{i:02d}.svg", svg)
            figures.append(f"<figure>{svg}<figcaption>{html.escape(name)}</figcaption></figure>")
    missing = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>cocosnet plots</title>"
        "<style>body{font-family:sans-serif;margin:2em}figure{display:inline-block;margin:1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}</style>"
        "</head><body><h1>Plots</h1>"
        + "".join(figures)
        + (f"<h2>Not loaded</h2><ul>{missing}</ul>" if missing else "")
        + "<h1>Metrics</h1>"
        + _metrics_table(metrics_json)
        + "</body></html>\n"
    )
    index = out / "index.html"
    write_text_atomic(index, page)
    return index, problems

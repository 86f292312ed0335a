"""The training curve as a table (metrics/train_curve_DS.csv, a DVC plot)."""

from __future__ import annotations

import csv
import io


def curve_csv(history: list[dict[str, float]]) -> str:
    """The logged values of every logged step, one row per step (a DVC plot)."""
    keys = sorted({k for row in history for k in row} - {"step"})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", *keys])
    for row in history:
        writer.writerow([int(row["step"]), *(row.get(k, "") for k in keys)])
    return out.getvalue()

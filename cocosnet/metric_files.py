"""A stage's summary as DVC reads it: the numbers in the metrics file (what `dvc metrics show`
and `dvc exp show` tabulate), everything else (run ids, reasons, protocols, per-class tables) in
a record beside it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Subtrees that go to the record whole, numbers or not: they are not results. Tables that would
# spread over dozens of columns (also in their own CSV plots where a stage writes one), how a
# result was measured, and where a run resumed from (null when it did not).
_RECORD_KEYS = ("per_class", "protocol", "resumed_from_step")
# Words kept beside the numbers: a number that means nothing without them (an FID is only
# comparable to FIDs of the same protocol, so a table of runs must show it).
_KEPT_WORDS = ("fid_protocol",)


def is_number(value: Any) -> bool:
    """An int or float that is not a bool (what a metrics table holds)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def split_summary(summary: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(numbers, record)``: the numeric leaves of ``summary`` (nesting kept) with the words
    they need (``fid_protocol``), and the rest."""
    numbers: dict[str, Any] = {}
    record: dict[str, Any] = {}
    for key, value in summary.items():
        if key in _RECORD_KEYS:
            record[key] = value
        elif isinstance(value, Mapping):
            inner_numbers, inner_record = split_summary(value)
            if inner_numbers:
                numbers[key] = inner_numbers
            if inner_record:
                record[key] = inner_record
        elif is_number(value) or (key in _KEPT_WORDS and isinstance(value, str)):
            numbers[key] = value
        else:
            record[key] = value
    return numbers, record
